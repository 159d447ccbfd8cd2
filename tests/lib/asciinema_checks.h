/* asciinema_checks: runs the real asciinema on a recording, as cmocka
 * assertions. Header-only because it asserts; include after <cmocka.h>. */
#ifndef SOCKGATE_ASCIINEMA_CHECKS_H
#define SOCKGATE_ASCIINEMA_CHECKS_H

#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/* Runs `asciinema CMD [OPT] PATH` (opt may be NULL); what it printed on stdout
 * goes into buf (at most cap bytes). Returns the byte count; fails the test if
 * asciinema fails, with its stderr. */
static inline size_t run_asciinema(const char *asciinema, const char *cmd, const char *opt,
				   const char *path, char *buf, size_t cap)
{
	/* `asciinema cat` opens /dev/tty: setsid -c makes the harness's pty
	 * (stdin) its controlling terminal. Its output is a pipe: exact bytes. */
	const char *argv[] = {"/usr/bin/setsid", "-c", "-w", asciinema, cmd, opt, path, NULL};
	const char *argv_noopt[] = {"/usr/bin/setsid", "-c", "-w", asciinema, cmd, path, NULL};
	const char *env[] = {"PYTHONIOENCODING=utf-8", "LC_ALL=C.UTF-8", NULL};
	struct harness_proc p;
	ssize_t n;

	assert_int_equal(harness_spawn(&p, opt != NULL ? argv : argv_noopt, env, HARNESS_STDIN_PTY),
			 0);
	n = harness_read_all(p.out_fd, buf, cap, HARNESS_TIMEOUT_MS);
	assert_int_equal(harness_wait_exit(&p, HARNESS_TIMEOUT_MS), 0);
	if (n < 0 || p.exit_code != 0)
		harness_dump_ready(p.err_fd, "asciinema's stderr");
	assert_true(n >= 0);
	assert_int_equal(p.exit_code, 0);
	harness_cleanup(&p);
	return (size_t)n;
}

#endif
