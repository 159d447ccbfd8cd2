/* test_ctl: sockgatectl against a running daemon. status; sessions lists a
 * logged-in session with its user and the bytes it moved, and --json the same;
 * kill by id, by user and by source ends exactly those (with the reason in the
 * log); penalties lists a penalised source and lift lets it in again;
 * upstreams shows each address; reload answers, and a bad file is an error
 * with the reason; drain closes the listeners and the daemon exits once the
 * last session ends. Access: root may, a uid in the control group may, any
 * other may not (SO_PEERCRED, whatever the file's mode); a malformed or
 * oversized request gets an error and leaves the daemon serving. */
#include <grp.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "Ctl-Pass-6"
#define T        FIXTURE_TIMEOUT_MS
#define SETPRIV  "/usr/bin/setpriv"

static const char *const users[] = {"alice", PASSWORD, "bob", PASSWORD, NULL};

struct ctl {
	struct fixture f;
	char socket[PATH_MAX + 16];
};

static int setup(void **state)
{
	struct ctl *c = calloc(1, sizeof(*c));
	char top[PATH_MAX + 128];

	assert_non_null(c);
	*state = c;
	assert_int_equal(fixture_init(&c->f, users), 0);
	assert_int_equal(fixture_upstream(&c->f, NULL), 0);
	snprintf(c->socket, sizeof(c->socket), "%s/control", c->f.dir);
	snprintf(top, sizeof(top),
		 "control = { socket = \"%s\"; group = \"nogroup\"; };\n"
		 "penalties = { authfail = 20; min = 15; noauth = 0; };",
		 c->socket);
	assert_int_equal(fixture_config(&c->f, top, "login = { failure_delay = 0; };"), 0);
	assert_int_equal(fixture_start(&c->f), 0);
	return 0;
}

static int teardown(void **state)
{
	struct ctl *c = *state;

	*state = &c->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* Runs sockgatectl (args NULL-ended, after "-s SOCKET"), optionally through
 * prefix (setpriv ...); out gets stdout and stderr. Returns the exit code. */
static int ctl_run(struct ctl *c, const char *const prefix[], const char *const args[], char *out,
		   size_t cap)
{
	const char *argv[32];
	struct harness_proc p;
	size_t n = 0;
	ssize_t got, got_err;
	int code;

	for (size_t i = 0; prefix != NULL && prefix[i] != NULL; i++)
		argv[n++] = prefix[i];
	argv[n++] = SOCKGATE_BIN_DIR "/sockgatectl";
	argv[n++] = "-s";
	argv[n++] = c->socket;
	for (size_t i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	got = harness_read_all(p.out_fd, out, cap - 1, T);
	out[got > 0 ? got : 0] = '\0';
	got_err = harness_read_all(p.err_fd, out + (got > 0 ? got : 0),
				   cap - 1 - (size_t)(got > 0 ? got : 0), T);
	if (got_err > 0)
		out[(got > 0 ? got : 0) + got_err] = '\0';
	assert_int_equal(harness_wait_exit(&p, T), 0);
	code = p.exit_code;
	harness_cleanup(&p);
	return code;
}

static int ctl(struct ctl *c, char *out, size_t cap, ...)
{
	const char *args[16];
	size_t n = 0;
	va_list ap;

	va_start(ap, cap);
	while (n < 15 && (args[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	args[n] = NULL;
	return ctl_run(c, NULL, args, out, cap);
}

/* A session logged in from src that has moved one line each way. */
static int session_from(struct ctl *c, const char *src, const char *user)
{
	char text[128];
	int fd = harness_connect_from(src, "127.0.0.1", c->f.port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	snprintf(text, sizeof(text), "%s\n%s\n", user, PASSWORD);
	send_str(fd, text);
	expect_str(fd, "You are now logged in.\n");
	send_str(fd, "hello\n");
	expect_str(fd, "I got your message: hello\n");
	return fd;
}

static void status_and_sessions(void **state)
{
	struct ctl *c = *state;
	char out[16384], want[128];
	int fd = session_from(c, "127.0.0.61", "alice");

	assert_int_equal(ctl(c, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "version"));
	assert_non_null(strstr(out, "relaying                 1"));
	assert_int_equal(ctl(c, out, sizeof(out), "sessions", "--user", "alice", NULL), 0);
	assert_non_null(strstr(out, "alice"));
	assert_non_null(strstr(out, "127.0.0.61:"));
	/* hello\n in (6 bytes), "I got your message: hello\n" out (26). */
	assert_int_equal(ctl(c, out, sizeof(out), "--json", "sessions", NULL), 0);
	assert_non_null(strstr(out, "\"user\":\"alice\""));
	assert_non_null(strstr(out, "\"bytes_in\":6,"));
	assert_non_null(strstr(out, "\"bytes_out\":26,"));
	assert_non_null(strstr(out, "\"state\":\"relaying\""));
	snprintf(want, sizeof(want), "\"gateway\":\"test\"");
	assert_non_null(strstr(out, want));
	close(fd);
}

/* Kill by id, by user and by source: each ends what it names, nothing else. */
static void kill_by_id_user_and_source(void **state)
{
	struct ctl *c = *state;
	char out[16384], id[64], line[1024], *at;
	int a1 = session_from(c, "127.0.0.71", "alice");
	int a2 = session_from(c, "127.0.0.72", "alice");
	int b = session_from(c, "127.0.0.73", "bob");
	int b2 = session_from(c, "127.0.0.74", "bob");

	assert_int_equal(ctl(c, out, sizeof(out), "--json", "sessions", "--user", "bob", NULL), 0);
	at = strstr(out, "\"id\":\"");
	assert_non_null(at);
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(at + 6, "\""), at + 6);
	/* bob's first session by its id. */
	assert_int_equal(ctl(c, out, sizeof(out), "kill", id, NULL), 0);
	assert_non_null(strstr(out, "1 session killed"));
	assert_int_equal(
		fixture_log_wait(&c->f, "killed by sockgatectl, uid 0", line, sizeof(line)), 0);
	assert_non_null(strstr(line, id));
	/* alice's two by user. */
	assert_int_equal(ctl(c, out, sizeof(out), "kill", "--user", "alice", NULL), 0);
	assert_non_null(strstr(out, "2 sessions killed"));
	(void)read_to_eof(a1);
	(void)read_to_eof(a2);
	/* The other bob session by its source. */
	assert_int_equal(ctl(c, out, sizeof(out), "sessions", NULL), 0);
	assert_int_equal(ctl(c, out, sizeof(out), "kill", "--source", "127.0.0.74/32", NULL), 0);
	assert_non_null(strstr(out, "1 session killed"));
	(void)read_to_eof(b2);
	assert_int_equal(ctl(c, out, sizeof(out), "--json", "sessions", NULL), 0);
	assert_string_equal(out, "[]\n");
	close(a1);
	close(a2);
	close(b);
	close(b2);
}

static void penalties_listed_and_lifted(void **state)
{
	struct ctl *c = *state;
	char out[16384], buf[4096];
	int fd = harness_connect_from("127.0.0.81", "127.0.0.1", c->f.port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\nwrong\n");
	expect_str(fd, "Username: ");
	close(fd);
	assert_int_equal(fixture_log_wait(&c->f, "source penalised", buf, sizeof(buf)), 0);
	assert_int_equal(ctl(c, out, sizeof(out), "penalties", NULL), 0);
	assert_non_null(strstr(out, "127.0.0.81/32"));
	assert_non_null(strstr(out, "refused"));
	assert_int_equal(ctl(c, out, sizeof(out), "penalties", "lift", "127.0.0.81", NULL), 0);
	fd = session_from(c, "127.0.0.81", "alice");
	close(fd);
	/* Nothing to lift a second time: an error. */
	assert_int_equal(ctl(c, out, sizeof(out), "penalties", "lift", "127.0.0.81", NULL), 1);
}

static void upstreams_and_reload(void **state)
{
	struct ctl *c = *state;
	char out[16384], want[64];
	FILE *f;

	assert_int_equal(ctl(c, out, sizeof(out), "upstreams", NULL), 0);
	snprintf(want, sizeof(want), "127.0.0.1:%d", c->f.upstream_port);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "up"));
	assert_int_equal(ctl(c, out, sizeof(out), "reload", NULL), 0);
	assert_non_null(strstr(out, "configuration reloaded"));
	f = fopen(c->f.conf, "a");
	assert_non_null(f);
	fputs("this is not libconfig\n", f);
	fclose(f);
	assert_int_equal(ctl(c, out, sizeof(out), "reload", NULL), 1);
	assert_non_null(strstr(out, "reload failed"));
}

static void access_is_root_and_the_group(void **state)
{
	struct ctl *c = *state;
	struct group *g = getgrnam("nogroup");
	char out[4096], gid[32], line[1024];
	const char *member[] = {SETPRIV, "--reuid=65534", "--regid", gid, "--clear-groups", NULL};
	const char *other[] = {SETPRIV, "--reuid=65534", "--regid=1", "--clear-groups", NULL};
	static const char *const status[] = {"status", NULL};
	char groups[1024];
	const char *many[] = {SETPRIV, "--reuid=65534", "--regid=1", groups, NULL};
	int at;

	if (access(SETPRIV, X_OK) != 0 || g == NULL || getuid() != 0)
		test_skip("needs root, setpriv and the group nogroup");
	snprintf(gid, sizeof(gid), "%u", (unsigned)g->gr_gid);
	/* The socket's mode lets anyone connect (SO_PEERCRED decides); the
	 * test's private directory must let them reach it. */
	assert_int_equal(chmod(c->f.dir, 0711), 0);
	if (ctl_run(c, member, status, out, sizeof(out)) != 0)
		fail_msg("a member of the control group was refused: %s", out);
	assert_non_null(strstr(out, "version"));
	/* A supplementary group counts, even behind a hundred others. */
	at = snprintf(groups, sizeof(groups), "--groups=");
	for (unsigned i = 1000; i < 1100; i++)
		at += snprintf(groups + at, sizeof(groups) - (size_t)at, "%u,", i);
	snprintf(groups + at, sizeof(groups) - (size_t)at, "%s", gid);
	if (ctl_run(c, many, status, out, sizeof(out)) != 0)
		fail_msg("a supplementary member of the control group was refused: %s", out);
	assert_int_equal(ctl_run(c, other, status, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "permission denied"));
	assert_int_equal(
		fixture_log_wait(&c->f, "control socket: uid 65534 refused", line, sizeof(line)),
		0);
}

/* Raw requests: garbage and an oversized line get an error; the daemon serves on. */
static void bad_requests_are_errors(void **state)
{
	struct ctl *c = *state;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char big[5000], buf[4096];
	ssize_t n;
	int fd;

	memcpy(sun.sun_path, c->socket, strlen(c->socket) + 1);
	for (int round = 0; round < 3; round++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		if (round == 0) {
			send_str(fd, "sessions user=\x01evil\n");
		} else if (round == 1) {
			/* Not "only bob": a key given twice is an error. */
			send_str(fd, "kill user=alice user=bob\n");
		} else {
			memset(big, 'a', sizeof(big));
			(void)!write(fd, big, sizeof(big));
		}
		n = harness_read_all(fd, buf, sizeof(buf) - 1, T);
		assert_true(n > 0);
		buf[n] = '\0';
		assert_int_equal(strncmp(buf, "ERROR ", 6), 0);
		close(fd);
	}
	assert_int_equal(ctl(c, buf, sizeof(buf), "status", NULL), 0);
}

static void drain_waits_for_the_last_session(void **state)
{
	struct ctl *c = *state;
	char out[4096], line[1024];
	int fd = session_from(c, "127.0.0.91", "alice");

	assert_int_equal(ctl(c, out, sizeof(out), "drain", "--timeout", "30", NULL), 0);
	assert_non_null(strstr(out, "draining"));
	/* No new connections... */
	assert_int_equal(
		fixture_log_wait(&c->f, "draining: no new connections", line, sizeof(line)), 0);
	assert_true(harness_connect("127.0.0.1", c->f.port) < 0);
	/* ...the open one goes on... */
	send_str(fd, "still\n");
	expect_str(fd, "I got your message: still\n");
	/* ...and when it ends, the daemon exits cleanly. */
	close(fd);
	assert_int_equal(harness_wait_exit(&c->f.daemon, T), 0);
	assert_int_equal(c->f.daemon.exit_code, 0);
}

/* Outside systemd's fd store a restart would end every session: refused. */
static void restart_needs_the_fd_store(void **state)
{
	struct ctl *c = *state;
	char out[4096];
	int fd = session_from(c, "127.0.0.95", "alice");

	assert_int_equal(ctl(c, out, sizeof(out), "restart", NULL), 1);
	assert_non_null(strstr(out, "restart needs systemd's fd store"));
	send_str(fd, "still here\n");
	expect_str(fd, "I got your message: still here\n");
	close(fd);
}

/* An idle daemon drains at once, and still answers the request that asked. */
static void drain_of_an_idle_daemon_answers(void **state)
{
	struct ctl *c = *state;
	char out[4096];

	assert_int_equal(ctl(c, out, sizeof(out), "drain", NULL), 0);
	assert_non_null(strstr(out, "draining"));
	assert_int_equal(harness_wait_exit(&c->f.daemon, T), 0);
	assert_int_equal(c->f.daemon.exit_code, 0);
}

/* Refused peers that hold their connections open take none of the socket's
 * places: the group's member still gets in. */
static void refused_peers_cannot_lock_out_members(void **state)
{
	struct ctl *c = *state;
	struct group *g = getgrnam("nogroup");
	char out[4096], gid[32], line[1024];
	const char *member[] = {SETPRIV, "--reuid=65534", "--regid", gid, "--clear-groups", NULL};
	static const char *const status[] = {"status", NULL};
	int held[16];

	if (access(SETPRIV, X_OK) != 0 || g == NULL || getuid() != 0)
		test_skip("needs root, setpriv and the group nogroup");
	snprintf(gid, sizeof(gid), "%u", (unsigned)g->gr_gid);
	assert_int_equal(chmod(c->f.dir, 0711), 0);
	/* As uid 65534 outside the group: connected, never sending, never closing. */
	for (int i = 0; i < 16; i++) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		char buf[64];

		memcpy(sun.sun_path, c->socket, strlen(c->socket) + 1);
		assert_int_equal(setegid(1), 0);
		assert_int_equal(seteuid(65534), 0);
		held[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(held[i] >= 0);
		assert_int_equal(connect(held[i], (struct sockaddr *)&sun, sizeof(sun)), 0);
		assert_int_equal(seteuid(0), 0);
		assert_int_equal(setegid(0), 0);
		/* Each is answered and closed without a word from it. */
		assert_true(harness_read_all(held[i], buf, sizeof(buf) - 1, T) > 0);
	}
	if (ctl_run(c, member, status, out, sizeof(out)) != 0)
		fail_msg("a member was locked out by refused peers: %s", out);
	assert_int_equal(ctl(c, out, sizeof(out), "status", NULL), 0);
	/* Sixteen refusals, not sixteen lines. */
	assert_int_equal(
		fixture_log_wait(&c->f, "control socket: uid 65534 refused", line, sizeof(line)),
		0);
	for (int i = 0; i < 16; i++)
		close(held[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(status_and_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(kill_by_id_user_and_source, setup, teardown),
		cmocka_unit_test_setup_teardown(penalties_listed_and_lifted, setup, teardown),
		cmocka_unit_test_setup_teardown(upstreams_and_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(access_is_root_and_the_group, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_requests_are_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(drain_waits_for_the_last_session, setup, teardown),
		cmocka_unit_test_setup_teardown(drain_of_an_idle_daemon_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(restart_needs_the_fd_store, setup, teardown),
		cmocka_unit_test_setup_teardown(refused_peers_cannot_lock_out_members, setup,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("ctl", tests, NULL, NULL));
}
