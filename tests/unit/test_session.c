/* test_session: the session state machine, in process, as a table of scripted
 * dialogues. Each script drives a real worker (loop thread, password pool)
 * through loopback sockets and states what the client and the upstream see at
 * each step: the prompts, the answers, that the upstream receives exactly the
 * bytes after the password (never the login), and how the session ends. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"
#include <crypt.h>

#include "auth.h"
#include "config.h"
#include "gateway.h"
#include "harness.h"
#include "log.h"
#include "loop.h"
#include "session.h"
#include "worker.h"

#define T 10000

enum step_kind {
	END = 0,  /* the script is over (zeroed steps read as END) */
	C_SEND,   /* the client sends text */
	C_EXPECT, /* the client receives text (accumulated until it appears) */
	C_EOF,    /* the client sees end of file */
	C_SHUT,   /* the client shuts down its sending side */
	U_ACCEPT, /* the upstream accepts the session's connection */
	U_EXPECT, /* the upstream receives exactly text */
	U_SEND,   /* the upstream sends text */
	U_SHUT,   /* the upstream shuts down its sending side */
	U_EOF,    /* the upstream sees end of file */
};

struct step {
	enum step_kind kind;
	const char *text;
};

struct script {
	const char *name;
	const char *settings; /* extra gateway settings */
	struct step steps[16];
};

static const struct script scripts[] = {
	{"login, relay, half-close both ways",
	 "",
	 {{C_EXPECT, "Username: "},
	  {C_SEND, "alice\n"},
	  {C_EXPECT, "Password: "},
	  {C_SEND, "pw\n"},
	  {U_ACCEPT, NULL},
	  {C_EXPECT, "Username and password are correct.\nYou are now logged in.\n"},
	  {C_SEND, "to upstream"},
	  {U_EXPECT, "to upstream"},
	  {U_SEND, "to client"},
	  {C_EXPECT, "to client"},
	  {C_SHUT, NULL},
	  {U_EOF, NULL},
	  {U_SEND, "late answer"},
	  {C_EXPECT, "late answer"},
	  {U_SHUT, NULL},
	  {C_EOF, NULL}}},
	{"pipelined bytes after the password go upstream, the login does not",
	 "",
	 {{C_SEND, "alice\npw\nearly\x01\x02 data"},
	  {U_ACCEPT, NULL},
	  {C_EXPECT, "You are now logged in.\n"},
	  {U_EXPECT, "early\x01\x02 data"},
	  {U_SHUT, NULL},
	  {C_SHUT, NULL},
	  {C_EOF, NULL},
	  {U_EOF, NULL}}},
	{"wrong password, then the right one",
	 "",
	 {{C_SEND, "alice\nbad\n"},
	  {C_EXPECT, "Username or password is incorrect.\nUsername: "},
	  {C_SEND, "alice\npw\n"},
	  {U_ACCEPT, NULL},
	  {C_EXPECT, "You are now logged in.\n"},
	  {END, NULL}}},
	{"unknown user reads as a wrong password",
	 "",
	 {{C_SEND, "nobody\npw\n"},
	  {C_EXPECT, "Username or password is incorrect.\nUsername: "},
	  {END, NULL}}},
	{"attempts exhausted",
	 "login = { max_attempts = 2; };",
	 {{C_SEND, "alice\nx\nalice\ny\n"},
	  {C_EXPECT, "incorrect.\nUsername: Password: Username or password is incorrect.\n"},
	  {C_EOF, NULL}}},
	{"an empty username asks again, it is no attempt",
	 "login = { max_attempts = 1; };",
	 {{C_SEND, "\n\n"},
	  {C_EXPECT, "Username: Username: Username: "},
	  {C_SEND, "alice\npw\n"},
	  {U_ACCEPT, NULL},
	  {C_EXPECT, "logged in"},
	  {END, NULL}}},
	{"control character ends the session",
	 "",
	 {{C_SEND, "ali\x1b"
		   "ce\n"},
	  {C_EXPECT, "Invalid character in input.\n"},
	  {C_EOF, NULL}}},
	{"client leaves during login",
	 "",
	 {{C_EXPECT, "Username: "}, {C_SEND, "alice\n"}, {C_SHUT, NULL}, {C_EOF, NULL}}},
	{"grace time",
	 "login = { grace_time = 0.2; };",
	 {{C_EXPECT, "Username: "}, {C_EXPECT, "Login timed out.\n"}, {C_EOF, NULL}}},
	{"custom texts",
	 "login = { username_prompt = \"login> \"; password_prompt = \"pass> \";"
	 " success_message = \"welcome\\n\"; failure_message = \"no\\n\"; };",
	 {{C_EXPECT, "login> "},
	  {C_SEND, "alice\n"},
	  {C_EXPECT, "pass> "},
	  {C_SEND, "bad\n"},
	  {C_EXPECT, "no\nlogin> "},
	  {C_SEND, "alice\npw\n"},
	  {U_ACCEPT, NULL},
	  {C_EXPECT, "welcome\n"},
	  {END, NULL}}},
	{"upstream closes first",
	 "",
	 {{C_SEND, "alice\npw\n"},
	  {U_ACCEPT, NULL},
	  {C_EXPECT, "logged in.\n"},
	  {U_SEND, "bye"},
	  {U_SHUT, NULL},
	  {C_EXPECT, "bye"},
	  {C_EOF, NULL},
	  {C_SEND, "after"},
	  {U_EXPECT, "after"},
	  {C_SHUT, NULL},
	  {U_EOF, NULL}}},
};

struct env {
	char users[64];
	int upstream_lfd;
	int upstream_port;
	struct auth_pool *auth;
	struct worker *worker;
	int session_rcvbuf; /* give the next session's socket a big receive buffer */
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct crypt_data cd;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct errbuf err;
	FILE *f;
	int fd;

	assert_non_null(e);
	/* Quiet: the log lines are the integration tests' business. */
	log_init("test_session", LOG_EMERG);
	snprintf(e->users, sizeof(e->users), "/tmp/test_session.XXXXXX");
	fd = mkstemp(e->users);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	memset(&cd, 0, sizeof(cd));
	assert_non_null(crypt_gensalt_rn("$6$", 5000, NULL, 0, salt, sizeof(salt)));
	fprintf(f, "alice:%s\n", crypt_r("pw", salt, &cd));
	fclose(f);
	e->upstream_lfd = harness_listen("127.0.0.1", &e->upstream_port);
	assert_true(e->upstream_lfd >= 0);
	e->auth = auth_pool_create(
		&(struct auth_pool_settings){.threads = 2, .threads_relaying = 1, .max_queue = 16},
		&err);
	assert_non_null(e->auth);
	e->worker = worker_create(
		&(struct worker_settings){.id = 0, .auth = e->auth, .scratch_len = 64 << 10}, &err);
	assert_non_null(e->worker);
	assert_int_equal(worker_start(e->worker, &err), 0);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	/* As the daemon shuts down: the pool stops first (its answers go to the
	 * worker's loop), the worker next (its sessions still name the pool),
	 * then the pool is freed. */
	auth_pool_stop(e->auth);
	worker_stop(e->worker, "test over");
	worker_free(e->worker);
	auth_pool_free(e->auth);
	close(e->upstream_lfd);
	unlink(e->users);
	free(e);
	return 0;
}

static void big_buffers(int fd, int opt_force, int opt);

/* Builds a gateway for the script's settings and starts a session on a fresh
 * loopback connection; returns the client's end. */
static int start_session(struct env *e, const struct script *sc)
{
	char text[1024];
	struct errbuf err;
	struct config *cfg;
	struct gateway *gw;
	struct session *s;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int lport, lfd = harness_listen("127.0.0.1", &lport), cfd, sfd;

	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"t\"; upstream = \"127.0.0.1:%d\"; credentials = \"%s\"; "
		 "%s } );",
		 e->upstream_port, e->users, sc->settings);
	cfg = config_parse("test.conf", text, &err);
	if (cfg == NULL)
		fail_msg("%s: %s", sc->name, err.msg);
	gw = gateway_create(cfg, &cfg->gateways[0], geteuid(), NULL, &err);
	assert_non_null(gw);
	config_unref(cfg);
	assert_true(gateway_session_begin(gw));
	cfd = harness_connect("127.0.0.1", lport);
	assert_true(cfd >= 0);
	sfd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	assert_true(sfd >= 0);
	if (e->session_rcvbuf)
		big_buffers(sfd, SO_RCVBUFFORCE, SO_RCVBUF);
	close(lfd);
	s = session_create(gw, sfd, (struct sockaddr *)&peer, plen);
	assert_non_null(s);
	session_start(s, worker_sessions(e->worker), 0);
	return cfd;
}

static int wait_readable(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};

	return poll(&p, 1, T) == 1;
}

/* Receives until want (exactly, for the upstream) or text containing want. */
static void expect(int fd, const char *want, int exact, const char *what)
{
	char buf[4096];
	size_t len = 0, wlen = strlen(want);

	while (len < wlen || (!exact && memmem(buf, len, want, wlen) == NULL)) {
		ssize_t n;

		if (len == sizeof(buf) || !wait_readable(fd))
			fail_msg("%s: waiting for \"%s\", got \"%.*s\"", what, want, (int)len, buf);
		n = recv(fd, buf + len, exact ? wlen - len : sizeof(buf) - len, 0);
		if (n <= 0)
			fail_msg("%s: EOF waiting for \"%s\", got \"%.*s\"", what, want, (int)len,
				 buf);
		len += (size_t)n;
		if (exact && len == wlen)
			break;
	}
	if (exact)
		assert_memory_equal(buf, want, wlen);
}

/* Reads until EOF; whatever comes before it is dropped (prompts, answers). */
static void expect_eof(int fd, const char *what)
{
	char buf[4096];

	for (;;) {
		ssize_t n;

		if (!wait_readable(fd))
			fail_msg("%s: no EOF", what);
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0)
			return;
		if (n < 0)
			fail_msg("%s: %s instead of EOF", what, strerror(errno));
	}
}

static void send_text(int fd, const char *text)
{
	assert_int_equal(harness_write_all(fd, text, strlen(text), T), 0);
}

static void run_script(struct env *e, const struct script *sc)
{
	int c = start_session(e, sc), u = -1;

	for (const struct step *st = sc->steps; st < sc->steps + 16 && st->kind != END; st++) {
		switch (st->kind) {
		case C_SEND:
			send_text(c, st->text);
			break;
		case C_EXPECT:
			expect(c, st->text, 0, sc->name);
			break;
		case C_EOF:
			expect_eof(c, sc->name);
			break;
		case C_SHUT:
			assert_int_equal(shutdown(c, SHUT_WR), 0);
			break;
		case U_ACCEPT:
			u = harness_accept(e->upstream_lfd, T);
			assert_true(u >= 0);
			break;
		case U_EXPECT:
			expect(u, st->text, 1, sc->name);
			break;
		case U_SEND:
			send_text(u, st->text);
			break;
		case U_SHUT:
			assert_int_equal(shutdown(u, SHUT_WR), 0);
			break;
		case U_EOF:
			expect_eof(u, sc->name);
			break;
		case END:
			break;
		}
	}
	close(c);
	if (u >= 0)
		close(u);
}

static void dialogues(void **state)
{
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++)
		run_script(*state, &scripts[i]);
}

/* The upstream must never receive a byte of the login exchange, even when the
 * client sends everything in one segment. */
static void login_never_reaches_upstream(void **state)
{
	static const struct script sc = {"one segment", "", {{END, NULL}}};
	struct env *e = *state;
	int c = start_session(e, &sc), u;
	char buf[256];
	ssize_t n;

	send_text(c, "alice\npw\n");
	u = harness_accept(e->upstream_lfd, T);
	assert_true(u >= 0);
	expect(c, "logged in.\n", 0, sc.name);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	n = harness_read_all(u, buf, sizeof(buf), T);
	assert_int_equal(n, 0);
	close(u);
	close(c);
}

/* The password checks hold a CPU back while sessions relay data (auth.h): the
 * session must say so when it moves bytes, and not for the login alone. */
static void relaying_is_reported_to_the_checks(void **state)
{
	static const struct script sc = {"report", "", {{END, NULL}}};
	struct env *e;
	int c, u;

	(void)state;
	/* A pool of its own: the other tests have relayed within the window. */
	assert_int_equal(env_setup((void **)&e), 0);
	c = start_session(e, &sc);
	send_text(c, "alice\npw\n");
	u = harness_accept(e->upstream_lfd, T);
	assert_true(u >= 0);
	expect(c, "logged in.\n", 0, sc.name);
	assert_int_equal(auth_pool_allowed(e->auth, loop_clock_ms()), 2);
	send_text(c, "ping\n");
	expect(u, "ping\n", 1, sc.name);
	send_text(u, "pong\n");
	expect(c, "pong\n", 1, sc.name);
	assert_int_equal(auth_pool_allowed(e->auth, loop_clock_ms()), 1);
	close(u);
	close(c);
	env_teardown((void **)&e);
}

static void big_buffers(int fd, int opt_force, int opt)
{
	int size = 32 << 20;

	/* FORCE (root) goes past net.core.[rw]mem_max; else take what we get. */
	if (setsockopt(fd, SOL_SOCKET, opt_force, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
}

/* A burst far larger than one wakeup's budget (1 MiB), all of it already in
 * the session's socket so that no further edge will come: the session must
 * keep yielding and resuming on its own until every byte is through (a lost
 * wakeup stalls it with bytes left in the socket). Big socket buffers make
 * sure nothing but the budget ever stops the pump. */
static void large_burst_then_quiet(void **state)
{
	static const struct script sc = {"burst", "", {{END, NULL}}};
	struct env *e = *state;
	size_t len = 8u << 20, got = 0;
	char *data = calloc(1, len), *sink = malloc(1 << 16);
	int c, u;

	assert_non_null(data);
	assert_non_null(sink);
	big_buffers(e->upstream_lfd, SO_RCVBUFFORCE, SO_RCVBUF);
	e->session_rcvbuf = 1;
	c = start_session(e, &sc);
	e->session_rcvbuf = 0;
	big_buffers(c, SO_SNDBUFFORCE, SO_SNDBUF);
	send_text(c, "alice\npw\n");
	assert_int_equal(harness_write_all(c, data, len, T), 0);
	u = harness_accept(e->upstream_lfd, T);
	assert_true(u >= 0);
	while (got < len) {
		ssize_t n;

		if (!wait_readable(u))
			fail_msg("stalled after %zu of %zu bytes", got, len);
		n = recv(u, sink, 1 << 16, 0);
		assert_true(n > 0);
		got += (size_t)n;
	}
	close(u);
	close(c);
	free(data);
	free(sink);
}

/* Urgent data (telnet's Interrupt Process) sent while the password is being
 * checked: recv() stops short at the urgent mark, which must not stall the
 * relay, and the urgent byte is relayed in line, not dropped. */
static void urgent_data_relayed(void **state)
{
	static const struct script sc = {"urgent", "", {{END, NULL}}};
	struct env *e = *state;
	int c = start_session(e, &sc), u;

	send_text(c, "alice\npw\n");
	send_text(c, "abc");
	assert_int_equal(send(c, "!", 1, MSG_OOB), 1);
	send_text(c, "def\n");
	u = harness_accept(e->upstream_lfd, T);
	assert_true(u >= 0);
	expect(u, "abc!def\n", 1, sc.name);
	close(u);
	close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dialogues),
		cmocka_unit_test(login_never_reaches_upstream),
		cmocka_unit_test(large_burst_then_quiet),
		cmocka_unit_test(urgent_data_relayed),
		cmocka_unit_test(relaying_is_reported_to_the_checks),
	};

	return test_exit(cmocka_run_group_tests_name("session", tests, env_setup, env_teardown));
}
