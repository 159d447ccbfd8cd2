/* Integration tests for sockgate-server and sockgate-client: the real programs on loopback,
 * driven through pipes and sockets. Each test starts its own server and its teardown kills
 * whatever is left, so one failure cannot leak into the next test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "harness.h"

#define T_MS            HARNESS_TIMEOUT_MS
#define CONCURRENT      50
#define MSGS_PER_CLIENT 3
#define ECHO_LEN        (10 * 1024 * 1024)

/* What a test may leave behind when an assertion fails: teardown releases all of it. */
struct fixture {
	struct harness_proc server;
	struct harness_proc client;
	int lfd; /* a listener the test plays server on */
	int fd;  /* a connection the test holds */
	int aux_fd;
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
		print_message("skipped: this kernel accepted the connection (%s)\n", err);
		skip();
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

	/* valgrind keeps descriptors of its own above the program's limit, and its slowness
	 * would swamp the CPU measurement. */
	if (harness_wrapper() != NULL) {
		print_message("skipped under SOCKGATE_TEST_WRAPPER: it measures CPU time and "
			      "descriptor limits of the process itself\n");
		skip();
	}
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
		print_message("skipped: no IPv6 loopback address here\n");
		skip();
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
	};

	return cmocka_run_group_tests_name("server_client", tests, NULL, NULL);
}
