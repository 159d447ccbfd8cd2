/* Integration tests for what sockgate-client keeps in memory: once a password line has gone to
 * the server, no copy of it may remain in the client while it stays connected. The test plays
 * the server, types the password (on a terminal and through a pipe), stops the idle client and
 * reads every readable page of it through /proc/PID/mem. Under SOCKGATE_TEST_WRAPPER
 * (valgrind) the scan covers valgrind's own memory too, and still finds what the old client
 * kept, so it runs there as well. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testmain.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define T_MS               HARNESS_TIMEOUT_MS
#define MEMORY_MAX_MAPPING (1ul << 30)

/* What a test may leave behind when an assertion fails: teardown releases all of it. */
struct fixture {
	struct harness_proc client;
	int lfd;   /* the listener the test plays server on */
	int fd;    /* the client's connection */
	int slave; /* our descriptor of the client's terminal, or -1 */
	bool stopped;
	int port;
	char port_str[12];
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->client.in_fd = f->client.out_fd = f->client.err_fd = -1;
	f->lfd = f->fd = f->slave = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f == NULL)
		return 0;
	if (f->stopped)
		kill(f->client.pid, SIGCONT);
	harness_cleanup(&f->client);
	if (f->lfd >= 0)
		close(f->lfd);
	if (f->fd >= 0)
		close(f->fd);
	if (f->slave >= 0)
		close(f->slave);
	free(f);
	return 0;
}

/* A password nothing else in the client could hold by chance: fresh random hex each run. */
static void password_make(char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[16];

	assert_true(len >= 2 * sizeof(rnd) + 12);
	assert_int_equal(getrandom(rnd, sizeof(rnd), 0), (ssize_t)sizeof(rnd));
	strcpy(buf, "pw-");
	for (size_t i = 0; i < sizeof(rnd); i++) {
		buf[3 + 2 * i] = hex[rnd[i] >> 4];
		buf[4 + 2 * i] = hex[rnd[i] & 15];
	}
	strcpy(buf + 3 + 2 * sizeof(rnd), "-secret");
}

/* Starts sockgate-client against a listener of the test's own and accepts its connection. */
static void client_start(struct fixture *f, unsigned spawn_flags)
{
	const char *argv[] = {"sockgate-client", "127.0.0.1", f->port_str, NULL};

	f->lfd = harness_listen("127.0.0.1", &f->port);
	assert_true(f->lfd >= 0);
	snprintf(f->port_str, sizeof(f->port_str), "%d", f->port);
	assert_int_equal(harness_spawn(&f->client, argv, NULL, spawn_flags), 0);
	f->fd = harness_accept(f->lfd, T_MS);
	if (f->fd < 0)
		fail_msg("the client did not connect");
	if (spawn_flags & HARNESS_STDIN_PTY) {
		f->slave = open(ptsname(f->client.in_fd), O_RDWR | O_NOCTTY | O_CLOEXEC);
		assert_true(f->slave >= 0);
	}
}

/* Reads fd (non-blocking) until what came contains needle. */
static void wait_for(int fd, const char *needle)
{
	long long until = now_ms() + T_MS;
	char buf[4096];
	size_t len = 0;

	buf[0] = '\0';
	while (strstr(buf, needle) == NULL) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long long left = until - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			fail_msg("no \"%s\" within %d ms; got \"%s\"", needle, T_MS, buf);
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			fail_msg("end of input before \"%s\"; got \"%s\"", needle, buf);
		len += (size_t)n;
		buf[len] = '\0';
	}
}

/* Waits until nothing is left for the client to read on fd (its stdin's pipe or terminal):
 * the kernel reports no event for that, so this looks again every millisecond. */
static void wait_input_taken(int fd)
{
	long long until = now_ms() + T_MS;
	int pending;

	for (;;) {
		assert_int_equal(ioctl(fd, FIONREAD, &pending), 0);
		if (pending == 0)
			return;
		if (now_ms() >= until)
			fail_msg("the client left %d bytes of its input unread", pending);
		poll(NULL, 0, 1);
	}
}

/* The system calls the client's loop blocks in, as /proc/PID/syscall numbers them (a libc
 * may implement poll() with ppoll()). */
static bool is_poll(long nr)
{
#ifdef SYS_poll
	if (nr == SYS_poll)
		return true;
#endif
	return nr == SYS_ppoll;
}

/* Whether pid is stopped, and if so whether in poll(): waiting for input, done with all it
 * read (a stopped task's syscall file names the call it was stopped in). */
static bool stopped_in_poll(pid_t pid, bool *in_poll)
{
	char path[64], text[512], *paren;
	bool stopped;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	stopped = fgets(text, sizeof(text), f) != NULL && (paren = strrchr(text, ')')) != NULL &&
		  paren[1] == ' ' && paren[2] == 'T';
	fclose(f);
	if (!stopped)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/syscall", (long)pid);
	f = fopen(path, "r");
	/* Unreadable (ptrace restrictions) would make the scan meaningless too. */
	if (f == NULL)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	*in_poll = fgets(text, sizeof(text), f) != NULL && is_poll(atol(text));
	fclose(f);
	return true;
}

/* Stops the client at a moment when it waits in poll(), having dealt with everything it
 * read, so its memory holds still while it is scanned. */
static void freeze(struct fixture *f)
{
	long long until = now_ms() + T_MS;
	pid_t pid = f->client.pid;

	for (;;) {
		bool in_poll = false;

		assert_int_equal(kill(pid, SIGSTOP), 0);
		f->stopped = true;
		while (!stopped_in_poll(pid, &in_poll)) {
			assert_true(now_ms() < until);
			poll(NULL, 0, 1);
		}
		if (in_poll)
			return;
		assert_int_equal(kill(pid, SIGCONT), 0);
		f->stopped = false;
		assert_true(now_ms() < until);
		poll(NULL, 0, 1);
	}
}

static void thaw(struct fixture *f)
{
	assert_int_equal(kill(f->client.pid, SIGCONT), 0);
	f->stopped = false;
}

/* How many times needle occurs in the readable memory of pid (every mapping in
 * /proc/PID/maps with 'r', read through /proc/PID/mem). Regions the kernel will not hand out
 * ([vvar], I/O mappings) are skipped, and so are matches that straddle two mappings. */
static size_t memory_count(pid_t pid, const char *needle)
{
	size_t nlen = strlen(needle), found = 0, chunk = 1 << 20;
	char path[64], line[512];
	char *buf = malloc(chunk + nlen);
	FILE *maps;
	int mem;

	assert_non_null(buf);
	snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pid);
	maps = fopen(path, "r");
	assert_non_null(maps);
	snprintf(path, sizeof(path), "/proc/%ld/mem", (long)pid);
	mem = open(path, O_RDONLY | O_CLOEXEC);
	if (mem < 0)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), maps) != NULL) {
		unsigned long start, end;
		char perms[5];
		size_t carry = 0;

		if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r')
			continue;
		/* The client itself uses a few MiB. Mappings of terabytes are AddressSanitizer's
		 * shadow (SOCKGATE_SANITIZE builds): metadata, not data, and hours to read. */
		if (end - start > MEMORY_MAX_MAPPING)
			continue;
		for (unsigned long at = start; at < end;) {
			size_t want = end - at < chunk ? end - at : chunk;
			ssize_t n = pread(mem, buf + carry, want, (off_t)at);
			const char *p = buf, *stop;

			if (n <= 0)
				break;
			stop = buf + carry + n;
			while ((p = memmem(p, (size_t)(stop - p), needle, nlen)) != NULL) {
				found++;
				p++;
			}
			/* Keep the last nlen - 1 bytes: a match may span two reads. */
			carry = (size_t)(stop - buf) < nlen - 1 ? (size_t)(stop - buf) : nlen - 1;
			memmove(buf, stop - carry, carry);
			at += (unsigned long)n;
		}
	}
	close(mem);
	fclose(maps);
	free(buf);
	return found;
}

static void expect_absent(pid_t pid, const char *needle, const char *what)
{
	size_t n = memory_count(pid, needle);

	if (n != 0)
		fail_msg("%zu cop%s of %s (\"%s\") in the memory of the idle sockgate-client", n,
			 n == 1 ? "y" : "ies", what, needle);
}

static void expect_present(pid_t pid, const char *needle, const char *what)
{
	if (memory_count(pid, needle) == 0)
		fail_msg("%s (\"%s\") is not in the memory of sockgate-client: the scan is blind",
			 what, needle);
}

/* Fails if any part of pw that a leak could leave is in pid's memory: all of it, or either
 * half (a partial send, a stale copy behind a memmove). */
static void expect_no_password(pid_t pid, const char *pw)
{
	size_t len = strlen(pw);
	char half[64];

	assert_true(len / 2 < sizeof(half));
	memcpy(half, pw, len / 2);
	half[len / 2] = '\0';
	expect_absent(pid, pw, "the password");
	expect_absent(pid, half, "the password's first half");
	expect_absent(pid, pw + len / 2, "the password's second half");
}

/* The server sends a banner and the prompt; the password typed at it reaches the server.
 * With the client stopped while it waits in poll(), still connected, its memory must hold
 * the banner and no trace of the password. Then a line typed but not ended, which the
 * client keeps unsent in the buffer the password went through, must show up: a control
 * that the scan sees that buffer (typed only now, as it would overwrite what the old code
 * left there). */
static void password_leaves_no_copy(struct fixture *f, bool tty)
{
	char banner[80], pending[80], pw[64], line[128], buf[16];
	size_t len;
	password_make(pw, sizeof(pw));
	snprintf(banner, sizeof(banner), "banner-%ld-%lld\r\n", (long)getpid(), now_ms());
	snprintf(pending, sizeof(pending), "unsent-%lld", now_ms());
	client_start(f, tty ? HARNESS_STDIN_PTY : 0);

	assert_int_equal(harness_write_all(f->fd, banner, strlen(banner), T_MS), 0);
	assert_int_equal(harness_write_all(f->fd, "Password: ", 10, T_MS), 0);
	wait_for(f->client.out_fd, "Password: ");
	len = strlen(pw);
	snprintf(line, sizeof(line), "%s\n", pw);
	assert_int_equal(harness_write_all(f->client.in_fd, line, len + 1, T_MS), 0);
	memset(line, 0, sizeof(line));
	assert_int_equal(harness_read_exact(f->fd, line, len + 1, T_MS), 0);
	assert_memory_equal(line, pw, len);
	assert_int_equal(line[len], '\n');
	if (tty) {
		/* The client ends the hidden line itself, after turning echo back on. */
		assert_int_equal(harness_read_exact(f->client.out_fd, buf, 1, T_MS), 0);
		assert_int_equal(buf[0], '\n');
	}

	/* The line has been sent, so any poll() the client waits in now comes after. */
	freeze(f);
	expect_present(f->client.pid, banner, "the server's banner");
	expect_no_password(f->client.pid, pw);
	thaw(f);

	if (tty) {
		/* ^D (VEOF) hands the unended line to the client; its echo shows that the
		 * terminal has taken both. */
		snprintf(line, sizeof(line), "%s\x04", pending);
		assert_int_equal(harness_write_all(f->client.in_fd, line, strlen(line), T_MS), 0);
		wait_for(f->client.in_fd, pending);
		wait_input_taken(f->slave);
	} else {
		assert_int_equal(harness_write_all(f->client.in_fd, pending, strlen(pending), T_MS),
				 0);
		wait_input_taken(f->client.in_fd);
	}
	freeze(f);
	expect_present(f->client.pid, pending, "the unsent line");
	expect_no_password(f->client.pid, pw);
	thaw(f);

	/* The server closes: the client is done, and says so with its exit code. */
	close(f->fd);
	f->fd = -1;
	if (harness_wait_exit(&f->client, T_MS) < 0)
		fail_msg("sockgate-client did not exit");
	if (harness_wrapper_failed(f->client.exit_code)) {
		harness_dump_ready(f->client.err_fd, "sockgate-client stderr");
		fail_msg("sockgate-client: SOCKGATE_TEST_WRAPPER found errors (exit code %d)",
			 f->client.exit_code);
	}
	assert_int_equal(f->client.term_signal, 0);
	assert_int_equal(f->client.exit_code, 0);
}

static void test_password_wiped_after_send_tty(void **state)
{
	password_leaves_no_copy(*state, true);
}

static void test_password_wiped_after_send_pipe(void **state)
{
	password_leaves_no_copy(*state, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_password_wiped_after_send_tty, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_password_wiped_after_send_pipe, setup,
						teardown),
	};

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
