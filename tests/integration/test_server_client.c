/* Integration tests for sockgate-server and sockgate-client: the real programs on loopback,
 * driven through pipes and sockets. Each test starts its own server and its teardown kills
 * whatever is left, so one failure cannot leak into the next test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testmain.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define T_MS            HARNESS_TIMEOUT_MS
#define CONCURRENT      50
#define MSGS_PER_CLIENT 3
#define ECHO_LEN        (10 * 1024 * 1024)
/* --max-children tests: the cap, and a burst larger than the server's accept batch (32). */
#define CAP_BURST     3
#define BURST_CONNS   40
#define BUSY_LINE     "Server busy, try again later.\n"
#define MAX_CONNS     64
#define STUFF_MAX_LEN (64 * 1024 * 1024)

/* What a test may leave behind when an assertion fails: teardown releases all of it. */
struct fixture {
	struct harness_proc server;
	struct harness_proc client;
	int lfd; /* a listener the test plays server on */
	int fd;  /* a connection the test holds */
	int aux_fd;
	int conn[MAX_CONNS]; /* connections a test holds, conn[0..nconn) */
	size_t nconn;
	int port;
	char port_str[12];
};

static struct fixture *fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->client.in_fd = f->client.out_fd = f->client.err_fd = -1;
	f->server.in_fd = f->server.out_fd = f->server.err_fd = -1;
	f->lfd = -1;
	f->fd = -1;
	f->aux_fd = -1;
	return f;
}

static struct fixture *fixture_start(const char *const extra_args[])
{
	const char *argv[16] = {"sockgate-server", "-l", "127.0.0.1", "-p", "0"};
	struct fixture *f = fixture_new();
	size_t n = 5;

	if (f == NULL)
		return NULL;
	for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 15; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	if (harness_spawn(&f->server, argv, NULL, HARNESS_STDIN_NULL) < 0)
		goto fail;
	f->port = harness_read_port(f->server.err_fd, T_MS);
	if (f->port < 0)
		goto fail;
	snprintf(f->port_str, sizeof(f->port_str), "%d", f->port);
	return f;
fail:
	harness_cleanup(&f->server);
	free(f);
	return NULL;
}

static int setup_bare(void **state)
{
	*state = fixture_new();
	return *state == NULL ? -1 : 0;
}

static int setup_message(void **state)
{
	*state = fixture_start(NULL);
	return *state == NULL ? -1 : 0;
}

static int setup_echo(void **state)
{
	static const char *const args[] = {"--echo", NULL};

	*state = fixture_start(args);
	return *state == NULL ? -1 : 0;
}

static int setup_tag(void **state)
{
	static const char *const args[] = {"--tag", "backend-7", NULL};

	*state = fixture_start(args);
	return *state == NULL ? -1 : 0;
}

static int setup_cap2(void **state)
{
	static const char *const args[] = {"--max-children", "2", NULL};

	*state = fixture_start(args);
	return *state == NULL ? -1 : 0;
}

static int setup_cap_burst(void **state)
{
	static const char *const args[] = {"-m", "3", NULL};

	*state = fixture_start(args);
	return *state == NULL ? -1 : 0;
}

static int setup_idle(void **state)
{
	static const char *const args[] = {"--idle-timeout", "1", NULL};

	*state = fixture_start(args);
	return *state == NULL ? -1 : 0;
}

/* Echo mode, so that a client that sends and never reads stalls the server's writes. */
static int setup_idle_echo(void **state)
{
	static const char *const args[] = {"-i", "1", "--echo", NULL};

	*state = fixture_start(args);
	return *state == NULL ? -1 : 0;
}

/* Stops a server the way systemd does, with SIGTERM, unless it exited already. Returns its
 * exit code, or -1 when a signal killed it or it did not exit in time. */
static int server_stop(struct harness_proc *s)
{
	if (!s->exited && (kill(s->pid, SIGTERM) < 0 || harness_wait_exit(s, T_MS) < 0))
		return -1;
	return s->term_signal == 0 ? s->exit_code : -1;
}

/* A server still running ends with SIGTERM and must exit 0: a clean exit is the last check of
 * every test, and under SOCKGATE_TEST_WRAPPER (valgrind) it also means no memory error and no
 * definite leak in the server. Its connection processes are forked, not exec'd: they run under
 * the wrapper too, but nobody sees their verdict (the server does not report exit codes). */
static int teardown(void **state)
{
	struct fixture *f = *state;
	int code = 0;

	if (f != NULL) {
		if (f->server.pid > 0) {
			code = server_stop(&f->server);
			if (code != 0) {
				fprintf(stderr, "sockgate-server: exit code %d, signal %d\n",
					f->server.exit_code, f->server.term_signal);
				harness_dump_ready(f->server.err_fd, "sockgate-server stderr");
			}
		}
		harness_cleanup(&f->server);
		harness_cleanup(&f->client);
		if (f->lfd >= 0)
			close(f->lfd);
		if (f->fd >= 0)
			close(f->fd);
		if (f->aux_fd >= 0)
			close(f->aux_fd);
		for (size_t i = 0; i < f->nconn; i++)
			if (f->conn[i] >= 0)
				close(f->conn[i]);
		free(f);
	}
	assert_int_equal(code, 0);
	return 0;
}

/* Waits for a process of ours to exit by itself and fails the test, with the checker's report,
 * if SOCKGATE_TEST_WRAPPER found errors in it. Returns its exit code, -1 if a signal killed it. */
static int wait_checked(struct harness_proc *p, const char *name)
{
	if (harness_wait_exit(p, T_MS) < 0)
		fail_msg("%s did not exit", name);
	if (harness_wrapper_failed(p->exit_code)) {
		harness_dump_ready(p->err_fd, name);
		fail_msg("%s: SOCKGATE_TEST_WRAPPER found errors (exit code %d)", name,
			 p->exit_code);
	}
	return p->term_signal == 0 ? p->exit_code : -1;
}

/* Runs sockgate-client with args, feeds it input, closes its stdin and collects its stdout and
 * stderr. Returns its exit code (-1 if a signal killed it); fails the test on a timeout. */
static int run_client(const char *const argv[], const char *input, char *out, size_t out_len,
		      char *err, size_t err_len)
{
	struct harness_proc c;
	ssize_t n;
	int code;

	assert_int_equal(harness_spawn(&c, argv, NULL, 0), 0);
	if (input != NULL && harness_write_all(c.in_fd, input, strlen(input), T_MS) < 0) {
		harness_cleanup(&c);
		fail_msg("cannot write to the client's stdin");
	}
	close(c.in_fd);
	c.in_fd = -1;
	n = harness_read_all(c.out_fd, out, out_len - 1, T_MS);
	out[n < 0 ? 0 : n] = '\0';
	n = harness_read_all(c.err_fd, err, err_len - 1, T_MS);
	err[n < 0 ? 0 : n] = '\0';
	if (harness_wait_exit(&c, T_MS) < 0) {
		harness_cleanup(&c);
		fail_msg("sockgate-client did not exit");
	}
	code = c.exit_code;
	harness_cleanup(&c);
	if (harness_wrapper_failed(code))
		fail_msg("sockgate-client: SOCKGATE_TEST_WRAPPER found errors (exit code %d):\n%s",
			 code, err);
	return code;
}

static void test_client_sends_lines(void **state)
{
	struct fixture *f = *state;
	const char *argv[] = {"sockgate-client", "127.0.0.1", f->port_str, NULL};
	char out[1024], err[1024];

	assert_int_equal(run_client(argv, "hello\nworld\n", out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "I got your message: hello\nI got your message: world\n");
	assert_string_equal(err, "");
	/* A child answers only after logging, so the lines are there already. */
	assert_int_equal(harness_read_line(f->server.out_fd, "", out, sizeof(out), T_MS), 0);
	assert_string_equal(out, "Here is the message: hello");
	assert_int_equal(harness_read_line(f->server.out_fd, "", out, sizeof(out), T_MS), 0);
	assert_string_equal(out, "Here is the message: world");
}

static void test_client_sends_partial_last_line(void **state)
{
	struct fixture *f = *state;
	const char *argv[] = {"sockgate-client", "127.0.0.1", f->port_str, NULL};
	char out[1024], err[1024];

	assert_int_equal(run_client(argv, "dos\r\nno newline", out, sizeof(out), err, sizeof(err)),
			 0);
	assert_string_equal(out, "I got your message: dos\nI got your message: no newline\n");
}

static void test_server_log_is_sanitised(void **state)
{
	struct fixture *f = *state;
	static const char msg[] = "bell\a esc\x1b[31m back\\slash\n";
	char in[256], line[256];
	ssize_t n;
	int fd;

	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	n = harness_exchange(fd, msg, sizeof(msg) - 1, in, sizeof(in) - 1, T_MS);
	close(fd);
	assert_true(n > 0);
	in[n] = '\0';
	/* The client gets its own bytes back; the operator's terminal gets no escapes. */
	assert_string_equal(in, "I got your message: bell\a esc\x1b[31m back\\slash\n");
	assert_int_equal(harness_read_line(f->server.out_fd, "Here is", line, sizeof(line), T_MS),
			 0);
	assert_string_equal(line, "Here is the message: bell\\x07 esc\\x1b[31m back\\\\slash");
}

static void test_fifty_concurrent_clients(void **state)
{
	struct fixture *f = *state;
	int fds[CONCURRENT];
	char out[256], want[1024], in[1024];
	ssize_t n;

	/* Every connection is open before any is served, so the server holds 50 at once. */
	for (int i = 0; i < CONCURRENT; i++) {
		fds[i] = harness_connect("127.0.0.1", f->port);
		assert_true(fds[i] >= 0);
	}
	for (int i = CONCURRENT - 1; i >= 0; i--) {
		size_t ol = 0, wl = 0;

		for (int j = 0; j < MSGS_PER_CLIENT; j++) {
			ol += (size_t)snprintf(out + ol, sizeof(out) - ol, "client %d says %d\n", i,
					       j);
			wl += (size_t)snprintf(want + wl, sizeof(want) - wl,
					       "I got your message: client %d says %d\n", i, j);
		}
		n = harness_exchange(fds[i], out, ol, in, sizeof(in) - 1, T_MS);
		close(fds[i]);
		fds[i] = -1;
		if (n < 0)
			fail_msg("client %d: no complete answer", i);
		in[n] = '\0';
		assert_string_equal(in, want);
	}
}

static void test_echo_ten_mib(void **state)
{
	struct fixture *f = *state;
	unsigned char *out = malloc(ECHO_LEN), *in = malloc(ECHO_LEN);
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	ssize_t n;
	int fd;

	assert_non_null(out);
	assert_non_null(in);
	/* xorshift64: every byte value, newlines and NULs included, reproducibly. */
	for (size_t i = 0; i < ECHO_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out[i] = (unsigned char)(x >> 32);
	}
	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	n = harness_exchange(fd, out, ECHO_LEN, in, ECHO_LEN, 60000);
	close(fd);
	assert_int_equal(n, ECHO_LEN);
	assert_memory_equal(in, out, ECHO_LEN);
	free(out);
	free(in);
}

static void test_tag_prefix(void **state)
{
	struct fixture *f = *state;
	const char *argv[] = {"sockgate-client", "127.0.0.1", f->port_str, NULL};
	char out[1024], err[1024];

	assert_int_equal(run_client(argv, "which one?\n", out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "[backend-7] I got your message: which one?\n");
}

static void test_no_zombies(void **state)
{
	struct fixture *f = *state;
	char in[256];
	ssize_t n;
	int fds[10];

	/* Several rounds of concurrent connections, each finished before the next. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 10; i++) {
			fds[i] = harness_connect("127.0.0.1", f->port);
			assert_true(fds[i] >= 0);
		}
		for (int i = 0; i < 10; i++) {
			n = harness_exchange(fds[i], "x\n", 2, in, sizeof(in), T_MS);
			close(fds[i]);
			assert_int_equal(n, (ssize_t)strlen("I got your message: x\n"));
		}
	}
	/* The children exit once their clients are done; the server must reap them all. */
	if (harness_wait_no_children(f->server.pid, 0, T_MS) < 0)
		fail_msg("server %ld still has %d children (%d zombies)", (long)f->server.pid,
			 harness_count_children(f->server.pid, 0),
			 harness_count_children(f->server.pid, 1));
	assert_int_equal(harness_count_children(f->server.pid, 1), 0);
}

static void test_overlong_line_closes_only_that_client(void **state)
{
	struct fixture *f = *state;
	char big[5000], line[256], in[1024];
	ssize_t n;
	int good, bad;

	good = harness_connect("127.0.0.1", f->port);
	bad = harness_connect("127.0.0.1", f->port);
	assert_true(good >= 0 && bad >= 0);
	assert_int_equal(harness_write_all(good, "first\n", 6, T_MS), 0);
	assert_int_equal(harness_read_line(good, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "I got your message: first");

	memset(big, 'x', sizeof(big));
	n = harness_exchange(bad, big, sizeof(big), in, sizeof(in) - 1, T_MS);
	close(bad);
	assert_true(n > 0);
	in[n] = '\0';
	assert_non_null(strstr(in, "line too long"));

	/* The other client is still served. */
	n = harness_exchange(good, "still here\n", 11, in, sizeof(in) - 1, T_MS);
	close(good);
	assert_true(n > 0);
	in[n] = '\0';
	assert_string_equal(in, "I got your message: still here\n");
}

static void test_longest_line_accepted(void **state)
{
	struct fixture *f = *state;
	static char msg[4096 + 1], in[4096 + 64];
	ssize_t n;
	int fd;

	memset(msg, 'y', 4096);
	msg[4096] = '\n';
	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	n = harness_exchange(fd, msg, sizeof(msg), in, sizeof(in), T_MS);
	close(fd);
	assert_int_equal(n, (ssize_t)strlen("I got your message: ") + 4097);
}

static void test_client_connection_refused(void **state)
{
	char out[256], err[512], want[256], port[12];
	const char *argv[] = {"sockgate-client", "127.0.0.1", port, NULL};
	int lfd, p;

	/* A port that was free a moment ago, with nothing listening any more. */
	lfd = harness_listen("127.0.0.1", &p);
	assert_true(lfd >= 0);
	close(lfd);
	snprintf(port, sizeof(port), "%d", p);
	assert_int_equal(run_client(argv, "", out, sizeof(out), err, sizeof(err)), 1);
	snprintf(want, sizeof(want),
		 "sockgate-client: cannot connect to 127.0.0.1:%d: Connection refused\n", p);
	assert_string_equal(err, want);
	assert_string_equal(out, "");
}

/* Starts sockgate-client against a listener of the test's own and accepts its connection
 * into f->fd. */
static void client_connect_to_test(struct fixture *f, unsigned spawn_flags)
{
	const char *argv[] = {"sockgate-client", "127.0.0.1", f->port_str, NULL};

	f->lfd = harness_listen("127.0.0.1", &f->port);
	assert_true(f->lfd >= 0);
	snprintf(f->port_str, sizeof(f->port_str), "%d", f->port);
	assert_int_equal(harness_spawn(&f->client, argv, NULL, spawn_flags), 0);
	f->fd = harness_accept(f->lfd, T_MS);
	if (f->fd < 0)
		fail_msg("the client did not connect");
}

static void test_client_connection_reset(void **state)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct fixture *f = *state;
	char line[256];

	client_connect_to_test(f, 0);
	/* Linger 0: close() sends RST instead of FIN. The client's stdin stays open. */
	assert_int_equal(setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(f->fd);
	f->fd = -1;
	assert_int_equal(wait_checked(&f->client, "sockgate-client"), 1);
	assert_int_equal(harness_read_line(f->client.err_fd, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "sockgate-client: connection reset by peer");
}

static void test_client_unresolvable_host(void **state)
{
	const char *argv[] = {"sockgate-client", "nohost.invalid", "23", NULL};
	char out[256], err[512];

	assert_int_equal(run_client(argv, "", out, sizeof(out), err, sizeof(err)), 1);
	assert_true(strncmp(err, "sockgate-client: cannot resolve \"nohost.invalid\": ",
			    strlen("sockgate-client: cannot resolve \"nohost.invalid\": ")) == 0);
}

static void test_client_usage_errors(void **state)
{
	static const char *const cases[][6] = {
		{"sockgate-client", NULL},
		{"sockgate-client", "127.0.0.1", NULL},
		{"sockgate-client", "127.0.0.1", "0", NULL},
		{"sockgate-client", "127.0.0.1", "http", NULL},
		{"sockgate-client", "-t", "0", "127.0.0.1", "23", NULL},
		{"sockgate-client", "-P", "", "127.0.0.1", "23", NULL},
		{"sockgate-client", "--bogus", "127.0.0.1", "23", NULL},
	};
	char out[2048], err[2048];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(run_client(cases[i], NULL, out, sizeof(out), err, sizeof(err)), 2);
		assert_true(strncmp(err, "sockgate-client: ", 17) == 0 ||
			    strstr(err, "unrecognized option") != NULL);
	}
}

/* The gateway's prompts come without a newline: the client must show them at once, and send
 * each line typed. */
static void test_client_shows_prompt_and_sends_line(void **state)
{
	struct fixture *f = *state;
	char buf[64];

	client_connect_to_test(f, 0);
	assert_int_equal(harness_write_all(f->fd, "Username: ", 10, T_MS), 0);
	assert_int_equal(harness_read_exact(f->client.out_fd, buf, 10, T_MS), 0);
	assert_memory_equal(buf, "Username: ", 10);
	assert_int_equal(harness_write_all(f->client.in_fd, "alice\n", 6, T_MS), 0);
	assert_int_equal(harness_read_exact(f->fd, buf, 6, T_MS), 0);
	assert_memory_equal(buf, "alice\n", 6);

	/* Not a terminal: the password line is sent like any other. */
	assert_int_equal(harness_write_all(f->fd, "Password: ", 10, T_MS), 0);
	assert_int_equal(harness_read_exact(f->client.out_fd, buf, 10, T_MS), 0);
	assert_memory_equal(buf, "Password: ", 10);
	assert_int_equal(harness_write_all(f->client.in_fd, "secret\npartial", 14, T_MS), 0);
	assert_int_equal(harness_read_exact(f->fd, buf, 7, T_MS), 0);
	assert_memory_equal(buf, "secret\n", 7);

	/* Only whole lines leave until stdin ends; then the rest goes, and a half-close. */
	close(f->client.in_fd);
	f->client.in_fd = -1;
	assert_int_equal(harness_read_all(f->fd, buf, sizeof(buf), T_MS), 7);
	assert_memory_equal(buf, "partial", 7);

	/* The client still prints what comes after its half-close, until we close. */
	assert_int_equal(harness_write_all(f->fd, "bye\n", 4, T_MS), 0);
	close(f->fd);
	f->fd = -1;
	assert_int_equal(harness_read_all(f->client.out_fd, buf, sizeof(buf), T_MS), 4);
	assert_memory_equal(buf, "bye\n", 4);
	assert_int_equal(wait_checked(&f->client, "sockgate-client"), 0);
}

static int tty_echoes(int fd)
{
	struct termios t;

	if (tcgetattr(fd, &t) < 0)
		fail_msg("tcgetattr: %s", strerror(errno));
	return (t.c_lflag & ECHO) != 0;
}

static void test_client_hides_password_on_tty(void **state)
{
	struct fixture *f = *state;
	char buf[64], line[256];
	int tty;

	client_connect_to_test(f, HARNESS_STDIN_PTY);
	tty = f->client.in_fd;
	assert_true(tty_echoes(tty));

	/* An ordinary prompt: what is typed shows. */
	assert_int_equal(harness_write_all(f->fd, "Username: ", 10, T_MS), 0);
	assert_int_equal(harness_read_exact(f->client.out_fd, buf, 10, T_MS), 0);
	assert_int_equal(harness_write_all(tty, "alice\n", 6, T_MS), 0);
	assert_int_equal(harness_read_exact(f->fd, buf, 6, T_MS), 0);
	assert_memory_equal(buf, "alice\n", 6);
	assert_int_equal(harness_read_line(tty, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "alice\r");

	/* The password prompt: echo is off by the time the prompt shows. */
	assert_int_equal(harness_write_all(f->fd, "Password: ", 10, T_MS), 0);
	assert_int_equal(harness_read_exact(f->client.out_fd, buf, 10, T_MS), 0);
	assert_memory_equal(buf, "Password: ", 10);
	assert_false(tty_echoes(tty));
	assert_int_equal(harness_write_all(tty, "secret\n", 7, T_MS), 0);
	assert_int_equal(harness_read_exact(f->fd, buf, 7, T_MS), 0);
	assert_memory_equal(buf, "secret\n", 7);
	/* The client ends the hidden line itself, after turning echo back on. */
	assert_int_equal(harness_read_exact(f->client.out_fd, buf, 1, T_MS), 0);
	assert_int_equal(buf[0], '\n');
	assert_true(tty_echoes(tty));

	/* The next line shows again, and is the first thing echoed since "alice". */
	assert_int_equal(harness_write_all(tty, "after\n", 6, T_MS), 0);
	assert_int_equal(harness_read_exact(f->fd, buf, 6, T_MS), 0);
	assert_int_equal(harness_read_line(tty, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "after\r");

	/* The server closes: the client is done. */
	close(f->fd);
	f->fd = -1;
	assert_int_equal(wait_checked(&f->client, "sockgate-client"), 0);
}

static void test_client_restores_echo_when_killed(void **state)
{
	struct fixture *f = *state;
	char buf[16];

	client_connect_to_test(f, HARNESS_STDIN_PTY);
	/* Our own descriptor of the terminal keeps its modes readable after the client died. */
	f->aux_fd = open(ptsname(f->client.in_fd), O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(f->aux_fd >= 0);
	assert_int_equal(harness_write_all(f->fd, "Password: ", 10, T_MS), 0);
	assert_int_equal(harness_read_exact(f->client.out_fd, buf, 10, T_MS), 0);
	assert_false(tty_echoes(f->aux_fd));

	/* Death by a signal: under SOCKGATE_TEST_WRAPPER the client has no exit code to report
	 * errors with; the other client tests cover its memory. */
	assert_int_equal(kill(f->client.pid, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(&f->client, T_MS), 0);
	assert_int_equal(f->client.term_signal, SIGTERM);
	assert_true(tty_echoes(f->aux_fd));
}

static void test_client_connect_timeout(void **state)
{
	struct fixture *f = *state;
	const char *argv[] = {"sockgate-client", "-t", "1", "127.0.0.1", f->port_str, NULL};
	char out[256], err[512], want[256];
	int code;

	/* A listener with backlog 0 and one connection queued drops further SYNs, so the
	 * client's connection attempt hangs until its timeout. */
	f->lfd = harness_listen("127.0.0.1", &f->port);
	assert_true(f->lfd >= 0);
	assert_int_equal(listen(f->lfd, 0), 0);
	snprintf(f->port_str, sizeof(f->port_str), "%d", f->port);
	f->fd = harness_connect("127.0.0.1", f->port);
	assert_true(f->fd >= 0);
	code = run_client(argv, "", out, sizeof(out), err, sizeof(err));
	if (code == 0 || strstr(err, "timed out") == NULL) {
		test_skip("this kernel accepted the connection (%s)", err);
	}
	assert_int_equal(code, 1);
	snprintf(want, sizeof(want),
		 "sockgate-client: cannot connect to 127.0.0.1:%d: Connection timed out\n",
		 f->port);
	assert_string_equal(err, want);
}

/* Out of descriptors, the server pauses accepting instead of spinning, and recovers. */
static void test_accept_emfile_backs_off(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, low;
	char line[256];
	long long cpu0, cpu1;
	int nfds;

	nfds = harness_proc_fd_count(f->server.pid);
	assert_true(nfds > 0);
	assert_int_equal(prlimit(f->server.pid, RLIMIT_NOFILE, NULL, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)nfds;
	assert_int_equal(prlimit(f->server.pid, RLIMIT_NOFILE, &low, NULL), 0);

	f->fd = harness_connect("127.0.0.1", f->port);
	assert_true(f->fd >= 0);
	assert_int_equal(harness_write_all(f->fd, "queued\n", 7, T_MS), 0);
	assert_int_equal(harness_read_line(f->server.err_fd, "accept: ", line, sizeof(line), T_MS),
			 0);
	assert_non_null(strstr(line, "Too many open files"));

	/* A measurement window, not synchronisation: half a second in which a spinning accept
	 * loop would burn ~500 ms and log again; the back-off costs next to nothing. */
	cpu0 = harness_proc_cpu_ms(f->server.pid);
	assert_int_equal(harness_read_line(f->server.err_fd, "accept", NULL, 0, 500), -1);
	cpu1 = harness_proc_cpu_ms(f->server.pid);
	assert_true(cpu0 >= 0 && cpu1 >= 0);
	if (cpu1 - cpu0 > 150)
		fail_msg("server used %lld ms of CPU in 500 ms while out of descriptors",
			 cpu1 - cpu0);

	assert_int_equal(prlimit(f->server.pid, RLIMIT_NOFILE, &old, NULL), 0);
	assert_int_equal(harness_read_line(f->fd, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "I got your message: queued");
}

static void test_ipv6_loopback(void **state)
{
	const char *sargv[] = {"sockgate-server", "-l", "::1", "-p", "0", NULL};
	struct fixture *f = *state;
	const char *cargv[] = {"sockgate-client", "::1", f->port_str, NULL};
	char line[256], out[256], err[256];
	int probe, p;

	probe = harness_listen("::1", &p);
	if (probe < 0) {
		test_skip("no IPv6 loopback address here");
	}
	close(probe);
	assert_int_equal(harness_spawn(&f->server, sargv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(
		harness_read_line(f->server.err_fd, "listening on", line, sizeof(line), T_MS), 0);
	if (strstr(line, "listening on [::1]:") == NULL)
		fail_msg("unexpected line \"%s\"", line);
	f->port = harness_parse_port(line);
	assert_true(f->port > 0);
	snprintf(f->port_str, sizeof(f->port_str), "%d", f->port);
	if (run_client(cargv, "over v6\n", out, sizeof(out), err, sizeof(err)) != 0)
		fail_msg("client failed: %s", err);
	assert_string_equal(out, "I got your message: over v6\n");
	/* The bracketed form works too. */
	cargv[1] = "[::1]";
	assert_int_equal(run_client(cargv, "brackets\n", out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "I got your message: brackets\n");
}

static void test_sigterm_exits_zero(void **state)
{
	struct fixture *f = *state;
	char line[256];
	int fd;

	/* A connection open during shutdown is served to its end by its own process. */
	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	assert_int_equal(harness_write_all(fd, "before\n", 7, T_MS), 0);
	assert_int_equal(harness_read_line(fd, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "I got your message: before");

	assert_int_equal(kill(f->server.pid, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(&f->server, T_MS), 0);
	assert_int_equal(f->server.term_signal, 0);
	assert_int_equal(f->server.exit_code, 0);
	assert_int_equal(harness_connect("127.0.0.1", f->port), -1);

	assert_int_equal(harness_write_all(fd, "after\n", 6, T_MS), 0);
	assert_int_equal(harness_read_line(fd, "", line, sizeof(line), T_MS), 0);
	assert_string_equal(line, "I got your message: after");
	close(fd);
}

static void test_sd_notify_ready(void **state)
{
	const char *argv[] = {"sockgate-server", "-l", "127.0.0.1", "-p", "0", NULL};
	char path[128], env_entry[160];
	const char *env[] = {env_entry, NULL};
	struct fixture *f = *state;

	f->fd = harness_notify_open(path, sizeof(path));
	assert_true(f->fd >= 0);
	snprintf(env_entry, sizeof(env_entry), "NOTIFY_SOCKET=%s", path);
	assert_int_equal(harness_spawn(&f->server, argv, env, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_notify_wait(f->fd, "READY=1", T_MS), 0);
	/* READY comes only after the listeners were announced. */
	assert_true(harness_read_port(f->server.err_fd, 0) > 0);
	assert_int_equal(kill(f->server.pid, SIGTERM), 0);
	assert_int_equal(harness_notify_wait(f->fd, "STOPPING=1", T_MS), 0);
	assert_int_equal(harness_wait_exit(&f->server, T_MS), 0);
	assert_int_equal(f->server.exit_code, 0);
}

/* Runs sockgate-server with argv, which must exit at once; returns the code and its stderr. */
static int run_server_failing(const char *const argv[], char *err, size_t len)
{
	struct harness_proc s;
	ssize_t n;
	int code;

	assert_int_equal(harness_spawn(&s, argv, NULL, HARNESS_STDIN_NULL), 0);
	n = harness_read_all(s.err_fd, err, len - 1, T_MS);
	err[n < 0 ? 0 : n] = '\0';
	if (harness_wait_exit(&s, T_MS) < 0) {
		harness_cleanup(&s);
		fail_msg("sockgate-server kept running");
	}
	code = s.exit_code;
	harness_cleanup(&s);
	if (harness_wrapper_failed(code))
		fail_msg("sockgate-server: SOCKGATE_TEST_WRAPPER found errors (exit code %d):\n%s",
			 code, err);
	return code;
}

static void test_server_argument_errors(void **state)
{
	static const struct {
		const char *argv[8];
		int code;
		const char *msg;
	} cases[] = {
		{{"sockgate-server", NULL}, 2, "missing -p PORT"},
		{{"sockgate-server", "-p", "65536", NULL}, 2, "out of range"},
		{{"sockgate-server", "-p", "http", NULL}, 2, "not a number"},
		{{"sockgate-server", "-l", "bad host", "-p", "0", NULL},
		 2,
		 "invalid listen address"},
		{{"sockgate-server", "-l", "", "-p", "0", NULL}, 2, "invalid listen address"},
		{{"sockgate-server", "-l", "127.0.0.1", "-p", "0", "extra", NULL},
		 2,
		 "unexpected argument"},
		{{"sockgate-server", "-p", "0", "--tag", "a\tb", NULL}, 2, "--tag"},
	};
	char err[2048];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = run_server_failing(cases[i].argv, err, sizeof(err));

		if (code != cases[i].code || strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: exit %d, stderr \"%s\"", i, code, err);
	}
}

static void test_server_port_in_use(void **state)
{
	const char *argv[] = {"sockgate-server", "-l", "127.0.0.1", "-p", NULL, NULL};
	char port[12], err[1024];
	int lfd, p, code;

	lfd = harness_listen("127.0.0.1", &p);
	assert_true(lfd >= 0);
	snprintf(port, sizeof(port), "%d", p);
	argv[4] = port;
	code = run_server_failing(argv, err, sizeof(err));
	close(lfd);
	assert_int_equal(code, 1);
	assert_non_null(strstr(err, "cannot bind 127.0.0.1:"));
	assert_non_null(strstr(err, "Address already in use"));
}

static long long test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection to ip:port that teardown closes if the test fails first. */
static int conn_open(struct fixture *f, const char *ip, int port)
{
	int fd;

	if (f->nconn == MAX_CONNS)
		fail_msg("more than %d connections", MAX_CONNS);
	fd = harness_connect(ip, port);
	if (fd < 0)
		fail_msg("cannot connect to %s port %d: %s", ip, port, strerror(errno));
	f->conn[f->nconn++] = fd;
	return fd;
}

static void conn_close(struct fixture *f, int fd)
{
	for (size_t i = 0; i < f->nconn; i++) {
		if (f->conn[i] == fd) {
			close(fd);
			f->conn[i] = -1;
			return;
		}
	}
	fail_msg("descriptor %d is not a connection of this test", fd);
}

/* One line there and its answer back: a process of the server serves fd. */
static void expect_served(int fd, const char *msg)
{
	char out[256], line[256], want[256];

	snprintf(out, sizeof(out), "%s\n", msg);
	snprintf(want, sizeof(want), "I got your message: %s", msg);
	assert_int_equal(harness_write_all(fd, out, strlen(out), T_MS), 0);
	if (harness_read_line(fd, "", line, sizeof(line), T_MS) < 0)
		fail_msg("no answer to \"%s\"", msg);
	assert_string_equal(line, want);
}

/* Waits until parent has at most max children, zombies included. The kernel reports no event
 * for that, so this re-reads /proc every 10 ms up to the timeout, as
 * harness_wait_no_children() does. Returns 0, or -1 on timeout. */
static int wait_children_at_most(pid_t parent, int max, int timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;
	int n;

	for (;;) {
		n = harness_count_children(parent, 0);
		if (n >= 0 && n <= max)
			return 0;
		if (n < 0 || test_now_ms() >= deadline)
			return -1;
		poll(NULL, 0, 10);
	}
}

/* At the cap a new client is told so and closed, those being served are not disturbed, and
 * once one of them ends the next client is served again. */
static void test_max_children_refuses_then_serves(void **state)
{
	struct fixture *f = *state;
	char buf[256], line[256];
	int a, b, c, d;
	ssize_t n;

	a = conn_open(f, "127.0.0.1", f->port);
	b = conn_open(f, "127.0.0.1", f->port);
	expect_served(a, "one");
	expect_served(b, "two");
	assert_int_equal(harness_count_children(f->server.pid, 0), 2);

	c = conn_open(f, "127.0.0.1", f->port);
	n = harness_read_all(c, buf, sizeof(buf) - 1, T_MS);
	if (n < 0)
		fail_msg("the third connection got no answer and no EOF (%d children)",
			 harness_count_children(f->server.pid, 0));
	buf[n] = '\0';
	assert_string_equal(buf, BUSY_LINE);
	assert_int_equal(harness_read_line(f->server.err_fd, "the limit", line, sizeof(line), T_MS),
			 0);
	assert_non_null(strstr(line, "2 connection processes"));
	assert_int_equal(harness_count_children(f->server.pid, 0), 2);
	expect_served(a, "still one");

	/* a's process exits on EOF and is reaped: its slot is free again. */
	conn_close(f, a);
	if (wait_children_at_most(f->server.pid, 1, T_MS) < 0)
		fail_msg("a child is left after its client closed: %d children",
			 harness_count_children(f->server.pid, 0));
	d = conn_open(f, "127.0.0.1", f->port);
	expect_served(d, "after");
	expect_served(b, "still two");
	assert_int_equal(harness_count_children(f->server.pid, 0), 2);
}

/* More connections at once than the cap and than one accept batch: exactly the cap are
 * served, every other one gets the busy line and EOF. */
static void test_max_children_burst(void **state)
{
	struct fixture *f = *state;
	struct pollfd pfd[BURST_CONNS];
	char got[BURST_CONNS][64];
	size_t len[BURST_CONNS] = {0}, map[BURST_CONNS];
	int fds[BURST_CONNS], eof[BURST_CONNS] = {0};
	int nbusy = 0, nserved = 0, children;
	long long deadline;

	for (int i = 0; i < BURST_CONNS; i++)
		fds[i] = conn_open(f, "127.0.0.1", f->port);

	/* The clients send nothing: a served one hears nothing, a refused one its line and
	 * EOF. Wait for as many EOFs as the cap leaves. */
	deadline = test_now_ms() + T_MS;
	while (nbusy < BURST_CONNS - CAP_BURST) {
		long long left = deadline - test_now_ms();
		nfds_t np = 0;
		int r;

		if (left <= 0)
			break;
		for (int i = 0; i < BURST_CONNS; i++) {
			if (eof[i])
				continue;
			pfd[np].fd = fds[i];
			pfd[np].events = POLLIN;
			map[np++] = (size_t)i;
		}
		r = poll(pfd, np, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		assert_true(r >= 0);
		for (nfds_t k = 0; k < np; k++) {
			size_t i = map[k];
			ssize_t n;

			if (pfd[k].revents == 0)
				continue;
			n = read(fds[i], got[i] + len[i], sizeof(got[i]) - 1 - len[i]);
			if (n > 0) {
				len[i] += (size_t)n;
				continue;
			}
			/* EOF, an error, or more than a busy line: in any case done. */
			eof[i] = 1;
			nbusy++;
		}
	}
	/* No client closed, so no child exited: the count now is the most there ever were. */
	children = harness_count_children(f->server.pid, 0);
	if (nbusy != BURST_CONNS - CAP_BURST || children != CAP_BURST)
		fail_msg("%d of %d connections refused, %d children (cap %d)", nbusy, BURST_CONNS,
			 children, CAP_BURST);
	for (int i = 0; i < BURST_CONNS; i++) {
		if (eof[i]) {
			got[i][len[i]] = '\0';
			assert_string_equal(got[i], BUSY_LINE);
			continue;
		}
		assert_int_equal(len[i], 0);
		expect_served(fds[i], "burst");
		nserved++;
	}
	assert_int_equal(nserved, CAP_BURST);
	assert_int_equal(harness_count_children(f->server.pid, 0), CAP_BURST);
}

/* A client that says nothing for the idle timeout is told so and closed, and its process
 * exits. */
static void test_idle_timeout_closes_quiet_client(void **state)
{
	static const char want[] = "error: idle timeout (1 s), closing\n";
	struct fixture *f = *state;
	char buf[256], line[256];
	long long t0, waited;
	ssize_t n;
	int fd;

	fd = conn_open(f, "127.0.0.1", f->port);
	expect_served(fd, "awake");
	t0 = test_now_ms();
	n = harness_read_all(fd, buf, sizeof(buf) - 1, T_MS);
	waited = test_now_ms() - t0;
	if (n < 0)
		fail_msg("the idle connection was not closed within %d ms", T_MS);
	buf[n] = '\0';
	assert_string_equal(buf, want);
	/* A measurement, not synchronisation: the server's clock started when it wrote the
	 * answer, just before we read it, so the close came about 1 s later, not at once. */
	if (waited < 800)
		fail_msg("closed after %lld ms, before the idle timeout of 1 s", waited);
	assert_int_equal(
		harness_read_line(f->server.err_fd, "idle for 1 s", line, sizeof(line), T_MS), 0);
	assert_int_equal(harness_wait_no_children(f->server.pid, 0, T_MS), 0);
}

/* A client that sends but never reads stalls the server's writes: no byte moves either way,
 * and the idle timeout ends that too. */
static void test_idle_timeout_client_not_reading(void **state)
{
	static char chunk[64 * 1024];
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct fixture *f = *state;
	int rcvbuf = 4096, reset = 0;
	long long deadline;
	size_t total = 0;
	char line[256];
	int fd;

	/* A small, fixed receive buffer (no autotuning) so the stall comes early. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	f->conn[f->nconn++] = fd;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	sin.sin_port = htons((uint16_t)f->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	memset(chunk, 'e', sizeof(chunk));

	/* Far more than every buffer on the way holds: once they are full only the server's
	 * close (a RST, as it leaves our bytes unread) ends this. */
	deadline = test_now_ms() + 2 * T_MS;
	while (!reset && total < STUFF_MAX_LEN && test_now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);

		if (n > 0) {
			total += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == ECONNRESET || errno == EPIPE)) {
			reset = 1;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			fail_msg("send after %zu bytes: %s", total, strerror(errno));
		if (poll(&p, 1, T_MS) == 0)
			fail_msg("stalled for %d ms after %zu bytes, and the server did not close",
				 T_MS, total);
	}
	if (!reset)
		fail_msg("%zu bytes sent and the server did not close", total);
	assert_int_equal(
		harness_read_line(f->server.err_fd, "idle for 1 s", line, sizeof(line), T_MS), 0);
	assert_int_equal(harness_wait_no_children(f->server.pid, 0, T_MS), 0);
}

/* What /proc/net/tcp or tcp6 lists as listening on port: the local addresses in the file's
 * hex form, up to max of them. Returns their number, or -1 if the file cannot be read. */
static int proc_net_listeners(const char *path, int port, char addrs[][33], int max)
{
	char row[512], addr[33];
	unsigned lport, st;
	int n = 0;
	FILE *fp;

	fp = fopen(path, "re");
	if (fp == NULL)
		return -1;
	while (fgets(row, sizeof(row), fp) != NULL) {
		if (sscanf(row, " %*d: %32[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", addr, &lport,
			   &st) != 3)
			continue;
		/* 0x0A: TCP_LISTEN */
		if (st != 0x0A || lport != (unsigned)port)
			continue;
		if (n < max)
			snprintf(addrs[n], 33, "%s", addr);
		n++;
	}
	fclose(fp);
	return n;
}

/* Without -l the server is reachable from this host only. 127.0.0.2 tells: it is a loopback
 * address too, but only a wildcard listener accepts there, as the second server shows. */
static void test_listen_loopback_by_default(void **state)
{
	const char *argv[] = {"sockgate-server", "-p", "0", NULL};
	const char *wargv[] = {"sockgate-server", "-l", "0.0.0.0", "-p", "0", NULL};
	char path[128], env_entry[160], line[256], lines[4][256], v4[64], v6[64], addrs[8][33];
	const char *env[] = {env_entry, NULL};
	struct fixture *f = *state;
	int nlines = 0, has_v4 = 0, has_v6 = 0, n, fd;

	f->fd = harness_notify_open(path, sizeof(path));
	assert_true(f->fd >= 0);
	snprintf(env_entry, sizeof(env_entry), "NOTIFY_SOCKET=%s", path);
	assert_int_equal(harness_spawn(&f->server, argv, env, HARNESS_STDIN_NULL), 0);
	/* READY=1 follows the last "listening on" line: all of them can be read now. */
	assert_int_equal(harness_notify_wait(f->fd, "READY=1", T_MS), 0);
	while (nlines < 4 && harness_read_line(f->server.err_fd, "listening on", lines[nlines],
					       sizeof(lines[nlines]), 0) == 0)
		nlines++;
	assert_true(nlines > 0);
	f->port = harness_parse_port(lines[0]);
	assert_true(f->port > 0);
	snprintf(v4, sizeof(v4), "listening on 127.0.0.1:%d", f->port);
	snprintf(v6, sizeof(v6), "listening on [::1]:%d", f->port);
	for (int i = 0; i < nlines; i++) {
		if (strstr(lines[i], v4) != NULL)
			has_v4++;
		else if (strstr(lines[i], v6) != NULL)
			has_v6++;
		else
			fail_msg("listens on more than loopback: \"%s\"", lines[i]);
	}
	assert_int_equal(has_v4, 1);
	assert_true(has_v6 <= 1);

	/* What the kernel says, whatever the log lines say. */
	n = proc_net_listeners("/proc/net/tcp", f->port, addrs, 8);
	if (n != 1 || strcmp(addrs[0], "0100007F") != 0)
		fail_msg("IPv4 listeners on port %d: %d, the first %s (want 127.0.0.1 only)",
			 f->port, n, n > 0 ? addrs[0] : "-");
	n = proc_net_listeners("/proc/net/tcp6", f->port, addrs, 8);
	if (n > 1 || (n == 1 && strcmp(addrs[0], "00000000000000000000000001000000") != 0))
		fail_msg("IPv6 listeners on port %d: %d, the first %s (want ::1 at most)", f->port,
			 n, n > 0 ? addrs[0] : "-");
	if (n != has_v6)
		fail_msg("%d \"listening on\" lines for %d IPv6 listeners", nlines, n);

	fd = conn_open(f, "127.0.0.1", f->port);
	expect_served(fd, "loopback");
	if (has_v6) {
		fd = conn_open(f, "::1", f->port);
		expect_served(fd, "loopback v6");
	}
	errno = 0;
	fd = harness_connect("127.0.0.2", f->port);
	if (fd >= 0) {
		close(fd);
		fail_msg("127.0.0.2 port %d accepts: the server listens beyond 127.0.0.1", f->port);
	}
	assert_int_equal(errno, ECONNREFUSED);
	assert_int_equal(server_stop(&f->server), 0);
	harness_cleanup(&f->server);

	/* Asked for explicitly, every address works as before. */
	assert_int_equal(harness_spawn(&f->server, wargv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(
		harness_read_line(f->server.err_fd, "listening on", line, sizeof(line), T_MS), 0);
	if (strstr(line, "listening on 0.0.0.0:") == NULL)
		fail_msg("unexpected line \"%s\"", line);
	f->port = harness_parse_port(line);
	assert_true(f->port > 0);
	fd = conn_open(f, "127.0.0.2", f->port);
	expect_served(fd, "any address");
}

static void test_server_limit_argument_errors(void **state)
{
	static const struct {
		const char *argv[8];
		const char *msg;
	} cases[] = {
		{{"sockgate-server", "-p", "0", "-m", "0", NULL},
		 "--max-children \"0\" is not a number from 1 to 100000"},
		{{"sockgate-server", "-p", "0", "--max-children", "100001", NULL},
		 "--max-children \"100001\" is not a number from 1 to 100000"},
		{{"sockgate-server", "-p", "0", "-m", "-1", NULL}, "--max-children \"-1\""},
		{{"sockgate-server", "-p", "0", "-m", "ten", NULL}, "--max-children \"ten\""},
		{{"sockgate-server", "-p", "0", "-m", "", NULL}, "--max-children \"\""},
		{{"sockgate-server", "-p", "0", "-m", "99999999999999999999999", NULL},
		 "--max-children \"9999999999999999\""},
		{{"sockgate-server", "-p", "0", "-i", "-1", NULL},
		 "--idle-timeout \"-1\" is not a number of seconds from 0 to 31536000"},
		{{"sockgate-server", "-p", "0", "--idle-timeout", "31536001", NULL},
		 "--idle-timeout \"31536001\""},
		{{"sockgate-server", "-p", "0", "-i", "1.5", NULL}, "--idle-timeout \"1.5\""},
		{{"sockgate-server", "-p", "0", "-i", " 5", NULL}, "--idle-timeout \" 5\""},
		{{"sockgate-server", "-p", "0", "--idle-timeout", NULL}, "idle-timeout"},
	};
	static const char *const limits[][8] = {
		{"-m", "1", "-i", "0", NULL},
		{"--max-children", "100000", "--idle-timeout", "31536000", NULL},
	};
	char err[2048];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = run_server_failing(cases[i].argv, err, sizeof(err));

		if (code != 2 || strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: exit %d, stderr \"%s\"", i, code, err);
	}
	/* The ends of both ranges are accepted. */
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct fixture *f = fixture_start(limits[i]);
		int code;

		if (f == NULL)
			fail_msg("limits %zu: the server did not start", i);
		code = server_stop(&f->server);
		harness_cleanup(&f->server);
		free(f);
		assert_int_equal(code, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_client_sends_lines, setup_message, teardown),
		cmocka_unit_test_setup_teardown(test_client_sends_partial_last_line, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(test_server_log_is_sanitised, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(test_fifty_concurrent_clients, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(test_echo_ten_mib, setup_echo, teardown),
		cmocka_unit_test_setup_teardown(test_tag_prefix, setup_tag, teardown),
		cmocka_unit_test_setup_teardown(test_no_zombies, setup_message, teardown),
		cmocka_unit_test_setup_teardown(test_overlong_line_closes_only_that_client,
						setup_message, teardown),
		cmocka_unit_test_setup_teardown(test_longest_line_accepted, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_exits_zero, setup_message, teardown),
		cmocka_unit_test(test_client_connection_refused),
		cmocka_unit_test_setup_teardown(test_client_connection_reset, setup_bare, teardown),
		cmocka_unit_test(test_client_unresolvable_host),
		cmocka_unit_test(test_client_usage_errors),
		cmocka_unit_test_setup_teardown(test_client_shows_prompt_and_sends_line, setup_bare,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_hides_password_on_tty, setup_bare,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_restores_echo_when_killed, setup_bare,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_connect_timeout, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_accept_emfile_backs_off, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(test_ipv6_loopback, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_sd_notify_ready, setup_bare, teardown),
		cmocka_unit_test(test_server_argument_errors),
		cmocka_unit_test(test_server_port_in_use),
		cmocka_unit_test_setup_teardown(test_max_children_refuses_then_serves, setup_cap2,
						teardown),
		cmocka_unit_test_setup_teardown(test_max_children_burst, setup_cap_burst, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout_closes_quiet_client, setup_idle,
						teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout_client_not_reading,
						setup_idle_echo, teardown),
		cmocka_unit_test_setup_teardown(test_listen_loopback_by_default, setup_bare,
						teardown),
		cmocka_unit_test(test_server_limit_argument_errors),
	};

	/* The valgrind run leaves out what measures the process itself: valgrind keeps
	 * descriptors of its own above the program's limit, and its slowness would swamp the
	 * CPU measurement. The plain run has it. */
	if (harness_wrapper() != NULL)
		cmocka_set_skip_filter("test_accept_emfile_backs_off");
	return test_exit(cmocka_run_group_tests_name("server_client", tests, NULL, NULL));
}
