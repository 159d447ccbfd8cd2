/* test_sgbench: a smoke run of the benchmark's load generator against a real
 * sockgate in front of `sgbench serve`: bulk, bulk2, pingpong, connrate and idle
 * run briefly, log in, and check what they moved; a wrong password fails; the
 * forking upstream serves and reaps.
 * It asserts correctness only, never speed. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testmain.h"

#include "fixture.h"

#ifndef SGBENCH_PATH
#error "SGBENCH_PATH must name the built sgbench"
#endif

#define PASSWORD "bench-Pw!1"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"bench", PASSWORD, NULL};

static struct fixture fx;
static char target[64];
static char pid_arg[32];

static int setup(void **state)
{
	static const char *const serve[] = {SGBENCH_PATH, "serve", "--listen", "127.0.0.1:0",
					    "--threads",  "2",     NULL};

	(void)state;
	if (fixture_init(&fx, users) < 0)
		return -1;
	if (harness_spawn(&fx.upstream, serve, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL) < 0)
		return -1;
	fx.upstream_port = harness_read_port(fx.upstream.err_fd, T);
	if (fx.upstream_port <= 0 || fixture_simple_config(&fx, "") < 0 || fixture_start(&fx) < 0) {
		fixture_teardown(&fx, 1);
		return -1;
	}
	snprintf(target, sizeof(target), "127.0.0.1:%d", fx.port);
	snprintf(pid_arg, sizeof(pid_arg), "%d", (int)fx.daemon.pid);
	return 0;
}

static int teardown(void **state)
{
	int rc = fixture_stop(&fx);

	(void)state;
	fixture_teardown(&fx, rc != 0);
	return rc == 0 ? 0 : -1;
}

/* Runs sgbench with args (NULL-ended) and returns its JSON result line. */
static void run(char *out, size_t cap, ...)
{
	const char *argv[40] = {SGBENCH_PATH};
	struct harness_proc p;
	size_t n = 1;
	ssize_t len;
	va_list ap;

	va_start(ap, cap);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 39;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	len = harness_read_all(p.out_fd, out, cap - 1, T);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	if (len < 0 || p.exit_code != 0)
		harness_dump_ready(p.err_fd, argv[1]);
	harness_cleanup(&p);
	assert_true(len > 0);
	out[len] = '\0';
	assert_int_equal(p.exit_code, 0);
	assert_non_null(strstr(out, "\"ok\":true"));
}

static void test_bulk2_checks_every_byte(void **state)
{
	char out[8192];

	(void)state;
	run(out, sizeof(out), "bulk2", "--target", target, "--login", "bench:" PASSWORD, "--bytes",
	    "1048576", "--timeout", "20", NULL);
	assert_non_null(strstr(out, "\"bytes\":1048576,"));
	assert_non_null(strstr(out, "\"verified\":true"));
}

static void test_bulk_to_the_sink(void **state)
{
	char out[8192];

	(void)state;
	run(out, sizeof(out), "bulk", "--target", target, "--login", "bench:" PASSWORD, "--conns",
	    "2", "--bytes", "1048576", "--timeout", "20", NULL);
	/* Two connections, each confirmed whole by the upstream. */
	assert_non_null(strstr(out, "\"bytes\":2097152,"));
}

static void test_pingpong(void **state)
{
	char out[8192];

	(void)state;
	run(out, sizeof(out), "pingpong", "--target", target, "--login", "bench:" PASSWORD,
	    "--conns", "3", "--seconds", "0.3", "--warmup", "0.1", "--pid", pid_arg, NULL);
	assert_non_null(strstr(out, "\"p99_us\":"));
	assert_null(strstr(out, "\"samples\":0,"));
}

static void test_connrate_with_login(void **state)
{
	char out[8192];

	(void)state;
	run(out, sizeof(out), "connrate", "--target", target, "--login", "bench:" PASSWORD,
	    "--concurrency", "2", "--seconds", "0.3", "--warmup", "0", NULL);
	assert_null(strstr(out, "\"completed\":0,"));
}

static void test_wrong_password_fails(void **state)
{
	const char *argv[] = {SGBENCH_PATH, "pingpong",    "--target",  target,
			      "--login",    "bench:wrong", "--seconds", "0.2",
			      "--timeout",  "10",          NULL};
	struct harness_proc p;

	(void)state;
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_not_equal(p.exit_code, 0);
	harness_cleanup(&p);
}

static void test_idle_samples_memory(void **state)
{
	char out[8192];

	(void)state;
	run(out, sizeof(out), "idle", "--target", target, "--login", "bench:" PASSWORD,
	    "--sessions", "20", "--concurrency", "8", "--settle", "0.1", "--pid", pid_arg, NULL);
	assert_non_null(strstr(out, "\"opened\":20,"));
	assert_non_null(strstr(out, "\"rss_kib_per_session\":"));
}

/* serve --fork, the forking upstream of the *_fork measurements: a process per
 * connection, with the same echo and check; the children are reaped. */
static void test_forking_upstream(void **state)
{
	static const char *const serve[] = {SGBENCH_PATH,  "serve",  "--listen",
					    "127.0.0.1:0", "--fork", NULL};
	struct harness_proc up;
	char out[8192], fork_target[64];
	int port;

	(void)state;
	assert_int_equal(harness_spawn(&up, serve, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	port = harness_read_port(up.err_fd, T);
	assert_true(port > 0);
	snprintf(fork_target, sizeof(fork_target), "127.0.0.1:%d", port);
	run(out, sizeof(out), "bulk2", "--target", fork_target, "--conns", "2", "--bytes",
	    "1048576", "--timeout", "20", NULL);
	assert_non_null(strstr(out, "\"bytes\":2097152,"));
	assert_non_null(strstr(out, "\"verified\":true"));
	run(out, sizeof(out), "bulk", "--target", fork_target, "--conns", "2", "--bytes", "1048576",
	    "--timeout", "20", NULL);
	assert_non_null(strstr(out, "\"bytes\":2097152,"));
	assert_int_equal(harness_wait_no_children(up.pid, 1, T), 0);
	kill(up.pid, SIGTERM);
	harness_wait_exit(&up, T);
	harness_cleanup(&up);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk2_checks_every_byte),
		cmocka_unit_test(test_bulk_to_the_sink),
		cmocka_unit_test(test_pingpong),
		cmocka_unit_test(test_connrate_with_login),
		cmocka_unit_test(test_idle_samples_memory),
		cmocka_unit_test(test_wrong_password_fails),
		cmocka_unit_test(test_forking_upstream),
	};

	return test_exit(cmocka_run_group_tests(tests, setup, teardown));
}
