/* test_gateway: the real sockgate in front of a real sockgate-server on
 * loopback: the login exchange, its failures, the relay, reloads and shutdown. */
#include <crypt.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "s3cr3t-Pw!x"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, "bob", "hunter2-bob", NULL};

static int start_with(void **state, const char *const upstream_args[], const char *extra)
{
	return fixture_test_setup(state, users, upstream_args, NULL, extra);
}

static int setup_message(void **state)
{
	return start_with(state, NULL, "");
}

static int setup_echo(void **state)
{
	static const char *const echo[] = {"--echo", NULL};

	return start_with(state, echo, "");
}

static int teardown(void **state)
{
	/* The password never reaches the log, whatever the test did; the daemon
	 * and the upstream exit cleanly. */
	return fixture_test_teardown(state, PASSWORD);
}

static void login_and_relay(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int fd = harness_connect("127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	expect_str(fd, "Password: ");
	send_str(fd, PASSWORD "\n");
	expect_str(fd, "Username and password are correct.\nYou are now logged in.\n");
	send_str(fd, "hello\n");
	expect_str(fd, "I got your message: hello\n");
	send_str(fd, "world\n");
	expect_str(fd, "I got your message: world\n");
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login ok", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"alice\""));
	assert_non_null(strstr(line, "remote_addr=127.0.0.1"));
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "bytes_in=12"));
	assert_non_null(strstr(line, "duration_ms="));
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A notify socket whose reader stops reading (a harness that took READY=1 and
 * went on) must not stall the daemon: once its queue is full, status updates
 * are dropped instead of waited for. Sessions opened over three seconds change
 * the status at every one-second update; each must still be served. */
static void notify_reader_stops_reading(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sun;
	socklen_t sl;
	int filler, fillers[256], fds[40];
	unsigned sent, n = 0, nfill = 0;
	long long end;

	/* Fill the queue of the fixture's notify socket (abstract, "@name"). */
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path + 1, f->notify_path + 1, strlen(f->notify_path) - 1);
	sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(f->notify_path));
	/* A sender stops at its own send buffer or at the receiver's queue
	 * limit (net.unix.max_dgram_qlen), whichever comes first: fill from
	 * fresh sockets until one cannot send even its first message. */
	for (;;) {
		assert_true(nfill < sizeof(fillers) / sizeof(fillers[0]));
		filler = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		assert_true(filler >= 0);
		sent = 0;
		while (sent < 100000 &&
		       sendto(filler, "X=1", 3, MSG_NOSIGNAL, (struct sockaddr *)&sun, sl) == 3)
			sent++;
		assert_int_equal(errno, EAGAIN);
		fillers[nfill++] = filler;
		if (sent == 0)
			break; /* the queue itself is full */
	}

	/* A new session every 100 ms or so, with round trips on the first one
	 * in between: the count changes at every status update. */
	end = mono_ms() + 3000;
	while (mono_ms() < end) {
		long long next = mono_ms() + 100;

		if (n < 40) {
			fds[n] = fixture_login(f->port, "alice", PASSWORD);
			assert_true(fds[n] >= 0);
			n++;
		}
		while (mono_ms() < next) {
			send_str(fds[0], "ping\n");
			expect_str(fds[0], "I got your message: ping\n");
		}
	}
	/* Under valgrind a login takes long: at least two, a status update apart. */
	assert_true(n >= 2);
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	for (unsigned i = 0; i < nfill; i++)
		close(fillers[i]);
}

static void wrong_then_right(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int fd = harness_connect("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	expect_str(fd, "Password: ");
	send_str(fd, "not-the-password\n");
	expect_str(fd, "Username or password is incorrect.\nUsername: ");
	send_str(fd, "alice\n");
	expect_str(fd, "Password: ");
	send_str(fd, PASSWORD "\n");
	expect_str(fd, "You are now logged in.\n");
	send_str(fd, "ping\n");
	expect_str(fd, "I got your message: ping\n");
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"alice\""));
	assert_null(strstr(line, "not-the-password"));
	assert_int_equal(fixture_log_wait(f, "login ok", line, sizeof(line)), 0);
}

static void max_attempts_exhausted(void **state)
{
	struct fixture *f = *state;
	int fd = harness_connect("127.0.0.1", f->port);
	const char *rest;

	/* The default is three attempts; pipeline them all. */
	expect_str(fd, "Username: ");
	send_str(fd, "alice\nx1\nalice\nx2\nalice\nx3\nalice\n" PASSWORD "\n");
	rest = read_to_eof(fd);
	assert_non_null(strstr(rest, "incorrect"));
	assert_null(strstr(rest, "logged in"));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "too many failed logins", NULL, 0), 0);
	assert_int_equal(logtap_count(f->log, "login failed"), 3);
}

static void unknown_user(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int fd = harness_connect("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	send_str(fd, "mallory\n");
	expect_str(fd, "Password: ");
	send_str(fd, "whatever\n");
	/* Exactly what a wrong password gets. */
	expect_str(fd, "Username or password is incorrect.\nUsername: ");
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"mallory\""));
}

static void grace_time_expired(void **state)
{
	struct fixture *f = *state;
	int fd = harness_connect("127.0.0.1", f->port);
	const char *rest;

	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	rest = read_to_eof(fd);
	assert_non_null(strstr(rest, "Login timed out."));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login grace time expired", NULL, 0), 0);
}

static void upstream_down(void **state)
{
	struct fixture *f = *state;
	int fd = harness_connect("127.0.0.1", f->port);
	const char *rest;

	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\n");
	rest = read_to_eof(fd);
	assert_non_null(strstr(rest, "Service unavailable.\n"));
	assert_null(strstr(rest, "logged in"));
	close(fd);
	/* Both addresses were tried, in order. */
	assert_int_equal(fixture_log_wait(f, "upstream connect failed", NULL, 0), 0);
	assert_int_equal(fixture_log_wait(f, "upstream connect failed", NULL, 0), 0);
	assert_int_equal(fixture_log_wait(f, "no upstream reachable", NULL, 0), 0);
}

static void pipelined_after_password(void **state)
{
	struct fixture *f = *state;
	int fd = harness_connect("127.0.0.1", f->port);
	char buf[4096];
	const char *ok;

	/* Everything in one write: the lines after the password are relayed.
	 * The answers may come in one read with the success message, so they
	 * are looked for in what came, in order. */
	send_str(fd, "alice\n" PASSWORD "\nfirst\nsecond\n");
	if (fixture_expect(fd, "I got your message: second\n", buf, sizeof(buf), T) < 0)
		fail_msg("expected both answers, got \"%s\"", buf);
	ok = strstr(buf, "You are now logged in.\n");
	assert_non_null(ok);
	assert_non_null(strstr(ok, "I got your message: first\n"));
	close(fd);
}

static void crlf_lines(void **state)
{
	struct fixture *f = *state;
	int fd = harness_connect("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	send_str(fd, "alice\r\n");
	expect_str(fd, "Password: ");
	send_str(fd, PASSWORD "\r\n");
	expect_str(fd, "You are now logged in.\n");
	close(fd);
}

static void one_byte_at_a_time(void **state)
{
	struct fixture *f = *state;
	const char *in = "alice\r\n" PASSWORD "\n";
	int fd = harness_connect("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	for (const char *p = in; *p != '\0'; p++)
		assert_int_equal(harness_write_all(fd, p, 1, T), 0);
	expect_str(fd, "You are now logged in.\n");
	close(fd);
}

static void overlong_line(void **state)
{
	struct fixture *f = *state;
	char big[400];
	const char *rest;
	int fd = harness_connect("127.0.0.1", f->port);

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_str(fd, "Username: ");
	send_str(fd, big);
	rest = read_to_eof(fd);
	assert_non_null(strstr(rest, "too long"));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login line too long", NULL, 0), 0);
}

static void control_character(void **state)
{
	struct fixture *f = *state;
	const char *rest;
	int fd = harness_connect("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	assert_int_equal(harness_write_all(fd, "al\0ice\n", 7, T), 0);
	rest = read_to_eof(fd);
	assert_non_null(strstr(rest, "Invalid character"));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "control character", NULL, 0), 0);
}

static void half_close(void **state)
{
	struct fixture *f = *state;
	int fd = fixture_login(f->port, "alice", PASSWORD);
	const char *rest;

	assert_true(fd >= 0);
	send_str(fd, "last words");
	/* After our SHUT_WR the upstream sees EOF; its answer still reaches us. */
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	rest = read_to_eof(fd);
	assert_string_equal(rest, "last words");
	close(fd);
	assert_int_equal(fixture_log_wait(f, "session closed", NULL, 0), 0);
}

static void bulk_100mib_each_way(void **state)
{
	struct fixture *f = *state;
	size_t len = 100u << 20;
	unsigned char *out = malloc(len), *in = malloc(len + 1);
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	int fd = fixture_login(f->port, "alice", PASSWORD);

	assert_true(fd >= 0);
	assert_non_null(out);
	assert_non_null(in);
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out[i] = (unsigned char)x;
	}
	assert_int_equal(harness_exchange(fd, out, len, in, len + 1, 120000), (ssize_t)len);
	assert_memory_equal(in, out, len);
	close(fd);
	free(out);
	free(in);
}

#define CONCURRENT 200

static void concurrent_sessions(void **state)
{
	struct fixture *f = *state;
	/* Under valgrind the password checks are slow enough to hit the grace time. */
	const int n = (int)harness_scale(CONCURRENT, 20);
	int fds[CONCURRENT];

	/* Each from a host of its own: one host gets only a few logins at once
	 * (limits.per_source_startups). */
	for (int i = 0; i < n; i++) {
		char src[32];

		harness_loopback_source((unsigned)i, src, sizeof(src));
		fds[i] = harness_connect_from(src, "127.0.0.1", f->port);
		assert_true(fds[i] >= 0);
	}
	/* All log in at once: the password checks overlap. */
	for (int i = 0; i < n; i++)
		send_str(fds[i], i % 2 ? "alice\n" PASSWORD "\n" : "bob\nhunter2-bob\n");
	for (int i = 0; i < n; i++)
		expect_str(fds[i], "You are now logged in.\n");
	for (int i = 0; i < n; i++) {
		char msg[64];

		snprintf(msg, sizeof(msg), "message %d\n", i);
		send_str(fds[i], msg);
	}
	for (int i = 0; i < n; i++) {
		char want[96];

		snprintf(want, sizeof(want), "I got your message: message %d\n", i);
		expect_str(fds[i], want);
		close(fds[i]);
	}
	for (int i = 0; i < n; i++)
		assert_int_equal(fixture_log_wait(f, "session closed", NULL, 0), 0);
}

static void reload_changed_credentials(void **state)
{
	struct fixture *f = *state;
	static const char *const changed[] = {"alice", "new-alice-pw", "carol", "carol-pw", NULL};
	int live = fixture_login(f->port, "alice", PASSWORD);
	int fd;

	assert_true(live >= 0);
	send_str(live, "before\n");
	expect_str(live, "I got your message: before\n");

	assert_int_equal(fixture_write_users(f, changed), 0);
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "configuration reloaded", NULL, 0), 0);

	/* The live session keeps relaying. */
	send_str(live, "after\n");
	expect_str(live, "I got your message: after\n");

	/* The old password no longer works; the new one and the new user do. */
	fd = harness_connect("127.0.0.1", f->port);
	send_str(fd, "alice\n" PASSWORD "\n");
	expect_str(fd, "incorrect");
	close(fd);
	fd = fixture_login(f->port, "alice", "new-alice-pw");
	assert_true(fd >= 0);
	close(fd);
	fd = fixture_login(f->port, "carol", "carol-pw");
	assert_true(fd >= 0);
	close(fd);
	close(live);
}

/* A user whose hash has another cost than the others can be told apart from
 * an unknown user by how long a wrong password takes: the daemon says so when
 * it loads such a file (and not for a file on one cost). */
static void users_append_bcrypt(struct fixture *f, const char *user, const char *password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *h;
	FILE *fp;

	assert_non_null(cd);
	assert_non_null(crypt_gensalt_rn("$2b$", 4, NULL, 0, setting, sizeof(setting)));
	h = crypt_r(password, setting, cd);
	assert_non_null(h);
	fp = fopen(f->users, "a");
	assert_non_null(fp);
	fprintf(fp, "%s:%s\n", user, h);
	assert_int_equal(fclose(fp), 0);
	free(cd);
}

static void reload_warns_of_mixed_hash_costs(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int fd;

	assert_false(logtap_contains(f->log, "different hash methods or costs"));
	users_append_bcrypt(f, "carol", "carol-pw");
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "different hash methods or costs", line, sizeof(line)),
			 0);
	assert_non_null(strstr(line, f->users));
	assert_non_null(strstr(line, "have 2 different hash methods or costs"));
	assert_non_null(strstr(line, "(2 of 3 users)"));
	/* A warning, not a refusal: carol logs in. */
	fd = fixture_login(f->port, "carol", "carol-pw");
	assert_true(fd >= 0);
	close(fd);
}

static void reload_broken_config(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int live = fixture_login(f->port, "alice", PASSWORD);
	int fd;

	assert_true(live >= 0);
	assert_int_equal(fixture_write_config(f, "gateways = ( { name = \"x\"; oops } );\n"), 0);
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "reload failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "sockgate.conf:1"));
	/* The old configuration still serves, old sessions and new ones. */
	send_str(live, "still here\n");
	expect_str(live, "I got your message: still here\n");
	fd = fixture_login(f->port, "bob", "hunter2-bob");
	assert_true(fd >= 0);
	close(fd);
	close(live);
}

static void max_sessions_enforced(void **state)
{
	struct fixture *f = *state;
	int a, b, d;
	const char *rest;

	a = harness_connect("127.0.0.1", f->port);
	b = harness_connect("127.0.0.1", f->port);
	expect_str(a, "Username: ");
	expect_str(b, "Username: ");
	d = harness_connect("127.0.0.1", f->port);
	rest = read_to_eof(d);
	assert_non_null(strstr(rest, "Too many connections."));
	close(d);
	assert_int_equal(fixture_log_wait(f, "max_sessions reached", NULL, 0), 0);
	/* A slot freed is a slot usable again. */
	close(a);
	assert_int_equal(fixture_log_wait(f, "session closed", NULL, 0), 0);
	d = fixture_login(f->port, "bob", "hunter2-bob");
	assert_true(d >= 0);
	close(d);
	close(b);
}

static void sigterm_closes_sessions(void **state)
{
	struct fixture *f = *state;
	int live = fixture_login(f->port, "alice", PASSWORD);
	const char *rest;

	assert_true(live >= 0);
	assert_int_equal(fixture_stop(f), 0);
	/* The password must never reach the log. */
	assert_false(logtap_contains(f->log, PASSWORD));
	rest = read_to_eof(live);
	(void)rest;
	close(live);
	assert_int_equal(fixture_log_wait(f, "stopping", NULL, 0), 0);
	assert_int_equal(fixture_log_wait(f, "reason=shutdown", NULL, 0), 0);
}

/* A real client program logs in through the gateway with the lines on its
 * stdin and must show the upstream's answer. */
static void real_client(struct fixture *f, const char *const argv[])
{
	static const char input[] = "alice\n" PASSWORD "\nhello from a real client\n";
	struct harness_proc p;
	char line[512];

	if (harness_spawn(&p, argv, NULL, HARNESS_STDERR_NULL) < 0) {
		print_message("skipping %s: not installed\n", argv[0]);
		return;
	}
	assert_int_equal(harness_write_all(p.in_fd, input, sizeof(input) - 1, T), 0);
	if (harness_read_line(p.out_fd, "I got your message: hello from a real client", line,
			      sizeof(line), T) < 0) {
		harness_cleanup(&p);
		fail_msg("%s %s: no answer from the upstream", argv[0], argv[1]);
	}
	harness_cleanup(&p);
}

static void real_clients(void **state)
{
	struct fixture *f = *state;
	char port[16], neg_port[16], tcp[64];

	snprintf(port, sizeof(port), "%d", f->port);
	/* "-PORT": telnet opens with option negotiation, as it does on port 23. */
	snprintf(neg_port, sizeof(neg_port), "-%d", f->port);
	snprintf(tcp, sizeof(tcp), "TCP:127.0.0.1:%d", f->port);
	{
		const char *const telnet[] = {"/usr/bin/telnet", "127.0.0.1", port, NULL};
		const char *const telnet_neg[] = {"/usr/bin/telnet", "--", "127.0.0.1", neg_port,
						  NULL};
		const char *const nc[] = {"/usr/bin/nc", "127.0.0.1", port, NULL};
		const char *const socat[] = {"/usr/bin/socat", "-", tcp, NULL};

		real_client(f, telnet);
		real_client(f, telnet_neg);
		real_client(f, nc);
		real_client(f, socat);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(fixture_log_wait(f, "login ok", NULL, 0), 0);
}

/* Runs `sockgate -t -c conf`; returns its exit code and stdout+stderr in out. */
static int check_config(const char *conf, char *out, size_t cap)
{
	const char *argv[] = {"sockgate", "-t", "-c", conf, NULL};
	struct harness_proc p;
	ssize_t n, m;
	int rc;

	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	n = harness_read_all(p.out_fd, out, cap - 1, T);
	assert_true(n >= 0);
	m = harness_read_all(p.err_fd, out + n, cap - 1 - (size_t)n, T);
	assert_true(m >= 0);
	out[n + m] = '\0';
	assert_int_equal(harness_wait_exit(&p, T), 0);
	rc = p.exit_code;
	harness_cleanup(&p);
	if (harness_wrapper_failed(rc))
		fail_msg("sockgate -t: SOCKGATE_TEST_WRAPPER found errors:\n%s", out);
	return rc;
}

static void check_mode(void **state)
{
	struct fixture *f = *state;
	char out[4096], text[PATH_MAX + 256];

	/* The running configuration is good. */
	assert_int_equal(check_config(f->conf, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "ok"));
	assert_null(strstr(out, "warning"));

	/* Users on two hash costs: good, with a warning that says so. */
	users_append_bcrypt(f, "carol", "carol-pw");
	assert_int_equal(check_config(f->conf, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "ok"));
	assert_non_null(strstr(out, "warning: gateway"));
	assert_non_null(strstr(out, "have 2 different hash methods or costs"));

	/* A syntax error: file and line. */
	assert_int_equal(fixture_write_config(f, "gateways = (\n  { name = \"x\" \n"), 0);
	assert_int_equal(check_config(f->conf, out, sizeof(out)), 1);
	assert_non_null(strstr(out, f->conf));
	assert_non_null(strstr(out, "sockgate.conf:"));

	/* A bad value: file, line and setting. */
	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"t\"; upstream = \"127.0.0.1:1\";\n"
		 "  credentials = \"%s\";\n  login = { max_attempts = 0; }; } );\n",
		 f->users);
	assert_int_equal(fixture_write_config(f, text), 0);
	assert_int_equal(check_config(f->conf, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "sockgate.conf:3"));
	assert_non_null(strstr(out, "max_attempts"));

	/* A credentials file with a plaintext password: its file and line, and
	 * never the password itself. */
	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"t\"; upstream = \"127.0.0.1:1\";\n"
		 "  credentials = \"%s\"; } );\n",
		 f->users);
	assert_int_equal(fixture_write_config(f, text), 0);
	{
		FILE *fp = fopen(f->users, "w");

		assert_non_null(fp);
		fputs("# users\nalice:plain-text-secret\n", fp);
		fclose(fp);
	}
	assert_int_equal(check_config(f->conf, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "users:2"));
	assert_null(strstr(out, "plain-text-secret"));

	/* A missing credentials file. */
	unlink(f->users);
	assert_int_equal(check_config(f->conf, out, sizeof(out)), 1);
	assert_non_null(strstr(out, f->users));
}

/* SIGTERM while hundreds of password checks are queued and every client has
 * its next attempt pipelined: the checks come back to sessions that are about
 * to close, and their next attempt must find the pool stopped, not freed. The
 * teardown's clean exit is the assertion (under ASan: no use after free). */
static void sigterm_during_password_storm(void **state)
{
	struct fixture *f = *state;
	enum { N = 300 };
	/* Under valgrind 30 checks queue up just as well: each takes far longer. */
	const int n = (int)harness_scale(N, 30);
	int fds[N];

	for (int i = 0; i < n; i++) {
		fds[i] = harness_connect("127.0.0.1", f->port);
		assert_true(fds[i] >= 0);
		send_str(fds[i], "alice\nwrong1\nalice\nwrong2\nalice\n" PASSWORD "\n");
	}
	assert_int_equal(fixture_stop(f), 0);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* A reload that drops a listener while a connection to it is already queued:
 * the listener's event and the SIGHUP land in one batch (the daemon is
 * stopped while both happen), and the listener must not be freed under it. */
static void reload_removes_listener_with_pending_event(void **state)
{
	struct fixture *f = *state;
	char text[2 * PATH_MAX + 512], line[512];
	int second_port, fd;
	const char *p;

	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"a\"; listen = \"127.0.0.1:0\"; upstream = "
		 "\"127.0.0.1:%d\";"
		 " credentials = \"%s\"; },\n"
		 "  { name = \"b\"; listen = \"127.0.0.2:0\"; upstream = \"127.0.0.1:%d\";"
		 " credentials = \"%s\"; } );\n",
		 f->upstream_port, f->users, f->upstream_port, f->users);
	assert_int_equal(fixture_write_config(f, text), 0);
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "listen=127.0.0.2:", line, sizeof(line)), 0);
	p = strstr(line, "127.0.0.2:") + strlen("127.0.0.2:");
	second_port = atoi(p);
	assert_true(second_port > 0);

	/* Gateway b goes away. */
	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"a\"; listen = \"127.0.0.1:0\"; upstream = "
		 "\"127.0.0.1:%d\";"
		 " credentials = \"%s\"; } );\n",
		 f->upstream_port, f->users);
	assert_int_equal(fixture_write_config(f, text), 0);
	assert_int_equal(kill(f->daemon.pid, SIGSTOP), 0);
	assert_int_equal(kill(f->daemon.pid, SIGHUP), 0);
	fd = harness_connect("127.0.0.2", second_port); /* queued in the backlog */
	assert_true(fd >= 0);
	assert_int_equal(kill(f->daemon.pid, SIGCONT), 0);
	assert_int_equal(harness_notify_wait(f->notify_fd, "RELOADING=1", T), 0);
	assert_int_equal(harness_notify_wait(f->notify_fd, "READY=1", T), 0);
	assert_int_equal(fixture_log_wait(f, "no longer listening on 127.0.0.2", NULL, 0), 0);
	close(fd);
	/* Gateway a still serves. */
	fd = fixture_login(f->port, "alice", PASSWORD);
	assert_true(fd >= 0);
	close(fd);
}

/* `sockgate --reload PID` returns once the reload is done, with its outcome. */
static int request_reload(pid_t pid)
{
	char arg[24];
	const char *argv[] = {"sockgate", "--reload", arg, NULL};
	struct harness_proc p;
	int rc;

	snprintf(arg, sizeof(arg), "%ld", (long)pid);
	/* stderr stays a pipe for the wrapper's report; the few lines fit in it. */
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	rc = p.exit_code;
	if (harness_wrapper_failed(rc))
		harness_dump_ready(p.err_fd, "sockgate --reload stderr");
	harness_cleanup(&p);
	if (harness_wrapper_failed(rc))
		fail_msg("sockgate --reload: SOCKGATE_TEST_WRAPPER found errors");
	return rc;
}

static void reload_request_waits_for_outcome(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	int fd;

	assert_int_equal(fixture_simple_config(f, "login = { success_message = \"v2\\n\"; };"), 0);
	assert_int_equal(request_reload(f->daemon.pid), 0);
	/* No waiting: when --reload returned, the new text is in use. */
	fd = harness_connect("127.0.0.1", f->port);
	send_str(fd, "alice\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "v2\n", buf, sizeof(buf), T) > 0);
	close(fd);
	/* A bad configuration: --reload says so; the daemon keeps serving. */
	assert_int_equal(fixture_write_config(f, "gateways = oops;\n"), 0);
	assert_int_equal(request_reload(f->daemon.pid), 1);
	fd = harness_connect("127.0.0.1", f->port);
	send_str(fd, "bob\nhunter2-bob\n");
	assert_true(fixture_expect(fd, "v2\n", buf, sizeof(buf), T) > 0);
	close(fd);
}

/* authenticate = false: a plain relay, straight through, no prompt. */
static void plain_relay_without_login(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int fd = harness_connect("127.0.0.1", f->port);

	send_str(fd, "no login here\n");
	expect_str(fd, "I got your message: no login here\n");
	close(fd);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "upstream=127.0.0.1:"));
	assert_null(strstr(line, "user="));
	assert_false(logtap_contains(f->log, "login ok"));
}

static int setup_plain(void **state)
{
	return start_with(state, NULL, "authenticate = false;");
}

static int setup_grace(void **state)
{
	return start_with(state, NULL, "login = { grace_time = 0.3; };");
}

/* Two upstream addresses where nothing listens (ports that were just free). */
static int setup_down(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char text[PATH_MAX + 512];
	int p1, p2, l1, l2;

	assert_non_null(f);
	*state = f;
	assert_int_equal(fixture_init(f, users), 0);
	l1 = harness_listen("127.0.0.1", &p1);
	l2 = harness_listen("127.0.0.1", &p2);
	assert_true(l1 >= 0 && l2 >= 0);
	close(l1);
	close(l2);
	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"down\"; listen = \"127.0.0.1:0\";"
		 " upstream = ( \"127.0.0.1:%d\", \"127.0.0.1:%d\" ); credentials = \"%s\"; } );\n",
		 p1, p2, f->users);
	assert_int_equal(fixture_write_config(f, text), 0);
	assert_int_equal(fixture_start(f), 0);
	return 0;
}

static int setup_max2(void **state)
{
	return start_with(state, NULL, "max_sessions = 2;");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(login_and_relay, setup_message, teardown),
		cmocka_unit_test_setup_teardown(wrong_then_right, setup_message, teardown),
		cmocka_unit_test_setup_teardown(notify_reader_stops_reading, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(max_attempts_exhausted, setup_message, teardown),
		cmocka_unit_test_setup_teardown(unknown_user, setup_message, teardown),
		cmocka_unit_test_setup_teardown(grace_time_expired, setup_grace, teardown),
		cmocka_unit_test_setup_teardown(upstream_down, setup_down, teardown),
		cmocka_unit_test_setup_teardown(pipelined_after_password, setup_message, teardown),
		cmocka_unit_test_setup_teardown(crlf_lines, setup_message, teardown),
		cmocka_unit_test_setup_teardown(one_byte_at_a_time, setup_message, teardown),
		cmocka_unit_test_setup_teardown(overlong_line, setup_message, teardown),
		cmocka_unit_test_setup_teardown(control_character, setup_message, teardown),
		cmocka_unit_test_setup_teardown(half_close, setup_echo, teardown),
		cmocka_unit_test_setup_teardown(bulk_100mib_each_way, setup_echo, teardown),
		cmocka_unit_test_setup_teardown(concurrent_sessions, setup_message, teardown),
		cmocka_unit_test_setup_teardown(reload_changed_credentials, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(reload_broken_config, setup_message, teardown),
		cmocka_unit_test_setup_teardown(reload_warns_of_mixed_hash_costs, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(max_sessions_enforced, setup_max2, teardown),
		cmocka_unit_test_setup_teardown(sigterm_closes_sessions, setup_message, teardown),
		cmocka_unit_test_setup_teardown(check_mode, setup_message, teardown),
		cmocka_unit_test_setup_teardown(real_clients, setup_message, teardown),
		cmocka_unit_test_setup_teardown(sigterm_during_password_storm, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(reload_removes_listener_with_pending_event,
						setup_message, teardown),
		cmocka_unit_test_setup_teardown(reload_request_waits_for_outcome, setup_message,
						teardown),
		cmocka_unit_test_setup_teardown(plain_relay_without_login, setup_plain, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return test_exit(cmocka_run_group_tests_name("gateway", tests, NULL, NULL));
}
