/* test_hostile: the real daemon, with the shipped defaults wherever a test does
 * not say otherwise, against clients that behave as attackers do: floods of
 * empty lines, hosts that hold every slot or reconnect as fast as they can,
 * floods meant to push the audit trail out of the journal, logins racing a
 * reload, overlong passwords and sockets that are not TCP. Every client is on
 * loopback; "another host" is another 127.0.0.0/8 address. Each test fails on
 * the code before the defence it covers (issue "Hostile clients"). */
#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "Correct-Horse-7"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, "bob", "bob-pw", NULL};

static int start(void **state, const char *top, const char *extra)
{
	return fixture_test_setup(state, users, NULL, top, extra);
}

static int setup_defaults(void **state)
{
	return start(state, NULL, "");
}

static int teardown(void **state)
{
	/* The password never reaches the log, whatever the test did; the daemon
	 * and the upstream exit cleanly. */
	return fixture_test_teardown(state, PASSWORD);
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* How long, in ms, a new client from src waits for its prompt; then it logs in
 * (a client that left at the prompt would cost its host a penalty). */
static long long prompt_wait_ms(const char *src, int port)
{
	long long t0 = harness_now_ms(), waited;
	int fd = connect_from(src, port);

	expect_str(fd, "Username: ");
	waited = harness_now_ms() - t0;
	send_str(fd, "alice\n" PASSWORD "\n");
	expect_str(fd, "You are now logged in.\n");
	close(fd);
	return waited;
}

/* ---- 1. empty lines -------------------------------------------------------- */

/* An empty line asks again, but only login.max_empty_lines (5) times: then the
 * connection ends, and its source pays for it (noauth). */
static void empty_lines_are_capped(void **state)
{
	struct fixture *f = *state;
	char line[512];
	const char *rest;
	int fd = connect_from("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	send_str(fd, "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n");
	rest = read_to_eof(fd);
	assert_int_equal(count(rest, "Username: "), 5);
	assert_non_null(strstr(rest, "Too many empty lines."));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"too many empty login lines\""));
}

/* What one read of login input asks for leaves in one write: three empty lines
 * in one segment are answered by three prompts in one segment. */
static void answers_to_one_read_leave_in_one_write(void **state)
{
	struct fixture *f = *state;
	struct tcp_info before, after;
	socklen_t len = sizeof(before);
	char buf[64];
	int fd = connect_from("127.0.0.1", f->port);

	expect_str(fd, "Username: ");
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &before, &len), 0);
	send_str(fd, "\n\n\n");
	assert_int_equal(harness_read_exact(fd, buf, 30, T), 0);
	assert_memory_equal(buf, "Username: Username: Username: ", 30);
	len = sizeof(after);
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &after, &len), 0);
	assert_int_equal(after.tcpi_data_segs_in - before.tcpi_data_segs_in, 1);
	close(fd);
}

/* A client that floods empty lines as fast as it can, and reconnects when it is
 * cut off, does not take the worker it shares with others (workers = 1): a
 * logged-in session's round trip and a newcomer's prompt take well under a
 * second while the flood runs. Before, the same flood held them for 15 s. */
struct flood {
	int port;
	long long until_ms;
	unsigned prompts;     /* what the flooder was answered */
	unsigned connections; /* it opened */
	pthread_mutex_t lock;
	pthread_cond_t started;
	bool running;
};

static void *flood_empty_lines(void *arg)
{
	struct flood *fl = arg;
	char out[256], in[8192];

	memset(out, '\n', sizeof(out));
	while (harness_now_ms() < fl->until_ms) {
		int fd = harness_connect_from("127.0.0.9", "127.0.0.1", fl->port);
		bool open = fd >= 0;

		fl->connections++;
		if (open)
			(void)fcntl(fd, F_SETFL, O_NONBLOCK);
		while (open && harness_now_ms() < fl->until_ms) {
			ssize_t n = send(fd, out, sizeof(out), MSG_NOSIGNAL);

			if (n < 0 && errno != EAGAIN)
				break;
			while ((n = recv(fd, in, sizeof(in) - 1, 0)) > 0) {
				pthread_mutex_lock(&fl->lock);
				in[n] = '\0';
				fl->prompts += count(in, "Username: ");
				fl->running = true;
				pthread_cond_broadcast(&fl->started);
				pthread_mutex_unlock(&fl->lock);
			}
			if (n == 0 || (n < 0 && errno != EAGAIN))
				open = false;
			else
				poll(&(struct pollfd){fd, POLLIN | POLLOUT, 0}, 1, 10);
		}
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static int setup_one_worker(void **state)
{
	/* The largest cap there is: the flood is cut by the budget per wakeup,
	 * not only by the cap. */
	return start(state, "workers = 1;", "login = { max_empty_lines = 1000; grace_time = 1; };");
}

static void empty_line_flood_does_not_take_the_worker(void **state)
{
	struct fixture *f = *state;
	struct flood fl = {.port = f->port,
			   .lock = PTHREAD_MUTEX_INITIALIZER,
			   .started = PTHREAD_COND_INITIALIZER};
	long long t0, rtt, prompt;
	pthread_t th;
	char buf[256];
	int user = fixture_login(f->port, "alice", PASSWORD);

	assert_true(user >= 0);
	fl.until_ms = harness_now_ms() + 3000;
	assert_int_equal(pthread_create(&th, NULL, flood_empty_lines, &fl), 0);
	pthread_mutex_lock(&fl.lock);
	while (!fl.running)
		pthread_cond_wait(&fl.started, &fl.lock);
	pthread_mutex_unlock(&fl.lock);

	t0 = harness_now_ms();
	send_str(user, "ping\n");
	assert_true(fixture_expect(user, "I got your message: ping\n", buf, sizeof(buf), T) > 0);
	rtt = harness_now_ms() - t0;
	prompt = prompt_wait_ms("127.0.0.2", f->port);
	pthread_join(th, NULL);
	print_message("during the flood: round trip %lld ms, newcomer's prompt %lld ms "
		      "(%u prompts to the flooder on %u connections)\n",
		      rtt, prompt, fl.prompts, fl.connections);
	assert_true(rtt < 1000);
	assert_true(prompt < 1000);
	close(user);
}

/* ---- 2. one host, many connections ------------------------------------------ */

/* A host that opens connections and drops them before trying a password is
 * penalised (noauth) and then refused at once, while another host is served. */
static void abandoned_connections_penalise_their_source(void **state)
{
	struct fixture *f = *state;
	char line[512];
	int refused_after = 0;

	for (int i = 1; i <= 40 && refused_after == 0; i++) {
		int fd = connect_from("127.0.0.3", f->port);
		char buf[256];
		ssize_t n = harness_read_exact(fd, buf, 10, T) == 0 ? 10 : -1;

		assert_true(n == 10);
		if (memcmp(buf, "Username: ", 10) != 0)
			refused_after = i;
		close(fd);
	}
	/* 1 s per abandoned connection, refused from 15 s on (the penalty runs
	 * down in real time meanwhile). */
	print_message("refused at connection %d\n", refused_after);
	assert_true(refused_after >= 15 && refused_after <= 25);
	assert_int_equal(fixture_log_wait(f, "source penalised", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "remote_addr=127.0.0.3"));
	assert_true(prompt_wait_ms("127.0.0.4", f->port) < 1000);
}

/* One host gets limits.per_source_startups (10) logins under way, not more:
 * the rest are refused and another host still gets in. */
static void one_host_gets_a_small_share(void **state)
{
	struct fixture *f = *state;
	enum { N = 30 };
	int fds[N], prompted = 0, refused = 0;

	for (int i = 0; i < N; i++) {
		char buf[16];

		fds[i] = connect_from("127.0.0.6", f->port);
		assert_int_equal(harness_read_exact(fds[i], buf, 10, T), 0);
		if (memcmp(buf, "Username: ", 10) == 0)
			prompted++;
		else if (memcmp(buf, "Too many c", 10) == 0)
			refused++;
	}
	assert_int_equal(prompted, 10);
	assert_int_equal(refused, N - 10);
	assert_true(prompt_wait_ms("127.0.0.7", f->port) < 1000);
	for (int i = 0; i < N; i++)
		close(fds[i]);
}

/* The attack: one host holds as many idle connections as it can,
 * drops and reopens each well before its grace time, and reopens every one
 * that is refused, as fast as it likes; meanwhile each of 20 clients of another
 * host gets its prompt within a second. */
struct holder {
	int port;
	long long until_ms;
	unsigned opened;
};

static void *hold_and_reconnect(void *arg)
{
	struct holder *h = arg;
	enum { SLOTS = 1100, HOLD_MS = 200 }; /* more than max_sessions was */
	struct pollfd p[SLOTS];
	long long opened_ms[SLOTS];

	for (int i = 0; i < SLOTS; i++)
		p[i] = (struct pollfd){-1, POLLIN, 0};
	while (harness_now_ms() < h->until_ms) {
		for (int i = 0; i < SLOTS; i++) {
			if (p[i].fd >= 0 && harness_now_ms() - opened_ms[i] > HOLD_MS) {
				close(p[i].fd); /* reopened long before its grace time */
				p[i].fd = -1;
			}
			if (p[i].fd >= 0)
				continue;
			p[i].fd = harness_connect_from("127.0.0.10", "127.0.0.1", h->port);
			opened_ms[i] = harness_now_ms();
			h->opened++;
		}
		if (poll(p, SLOTS, 20) <= 0)
			continue;
		for (int i = 0; i < SLOTS; i++) {
			char buf[512];

			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT) > 0 &&
			    memcmp(buf, "Username: ", 10) == 0)
				continue; /* prompted: hold it */
			close(p[i].fd);
			p[i].fd = -1;
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	return NULL;
}

static void a_host_reconnecting_as_fast_as_it_likes_locks_nobody_out(void **state)
{
	struct fixture *f = *state;
	struct holder h = {.port = f->port};
	long long worst = 0;
	pthread_t th;

	h.until_ms = harness_now_ms() + 4000;
	assert_int_equal(pthread_create(&th, NULL, hold_and_reconnect, &h), 0);
	for (int i = 0; i < 20; i++) {
		long long w = prompt_wait_ms("127.0.0.2", f->port);

		if (w > worst)
			worst = w;
		poll(NULL, 0, 100); /* pacing the measurements, not waiting for anything */
	}
	pthread_join(th, NULL);
	print_message("the other host's slowest prompt: %lld ms (the attacker opened %u)\n", worst,
		      h.opened);
	assert_true(worst < 1000);
	assert_true(logtap_contains(f->log, "source penalised"));
}

/* ---- 3. the audit trail ---------------------------------------------------- */

/* 3,000 connections from one host that never log in write a handful of lines
 * and one summary with the counts, not 3,000 lines; the security events of
 * the same time (the host penalised, another host's login) are all written. */
static void a_connection_flood_is_summarised(void **state)
{
	struct fixture *f = *state;
	enum { N = 3000 };
	unsigned long full = 0, summed = 0;
	int user;

	for (int i = 0; i < N; i++) {
		int fd = connect_from("127.0.0.8", f->port);

		/* Gone before the prompt; the daemon's answer (prompt or refusal)
		 * and its close end the exchange, so each is counted once. */
		shutdown(fd, SHUT_WR);
		(void)read_to_eof(fd);
		close(fd);
		if (i == N / 2) {
			user = fixture_login(f->port, "alice", PASSWORD);
			assert_true(user >= 0);
			close(user);
		}
	}
	assert_int_equal(fixture_stop(f), 0); /* flushes the summaries */
	full = logtap_count(f->log, "session closed remote_addr=127.0.0.8 ") +
	       logtap_count(f->log, "connection refused gateway=test remote_addr=127.0.0.8");
	for (size_t cursor = 0;;) {
		char line[1024];
		const char *p;

		if (logtap_wait(f->log, "connections without login remote_addr=127.0.0.8", &cursor,
				line, sizeof(line), 0) < 0)
			break;
		p = strstr(line, " closed=");
		assert_non_null(p);
		summed += strtoul(p + 8, NULL, 10);
		p = strstr(line, " refused=");
		assert_non_null(p);
		summed += strtoul(p + 9, NULL, 10);
	}
	print_message("%lu lines in full, %lu in summaries, %zu log lines in all\n", full, summed,
		      logtap_lines(f->log));
	assert_true(full <= 10);
	assert_int_equal(full + summed, N);
	assert_true(logtap_contains(f->log, "login ok remote_addr=127.0.0.1 "));
	assert_int_equal(logtap_count(f->log, "source penalised remote_addr=127.0.0.8 "), 1);
	assert_true(logtap_lines(f->log) < 100);
}

/* ---- 6. a reload reaches logins under way ---------------------------------- */

/* A client at the password prompt when the password changes: the old password
 * no longer works, the new one does. */
static void a_reload_reaches_logins_under_way(void **state)
{
	struct fixture *f = *state;
	static const char *const changed[] = {"alice", "New-Password-8", "bob", "bob-pw", NULL};
	int fd = connect_from("127.0.0.1", f->port), ok;

	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	expect_str(fd, "Password: ");
	assert_int_equal(fixture_write_users(f, changed), 0);
	assert_int_equal(fixture_reload(f), 0);
	send_str(fd, PASSWORD "\n");
	expect_str(fd, "Username or password is incorrect.\n");
	close(fd);
	ok = fixture_login(f->port, "alice", "New-Password-8");
	assert_true(ok >= 0);
	close(ok);
}

/* ---- 7. password length ---------------------------------------------------- */

static int setup_costly_hash(void **state)
{
	struct fixture *f;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char text[512];
	FILE *fp;
	int rc;

	assert_non_null(cd);
	rc = start(state, "auth_threads = 1;\npenalties = { enabled = false; };",
		   "login = { max_attempts = 100; failure_delay = 0; };");
	f = *state;
	/* sha512-crypt's cost grows with the password's length. */
	assert_non_null(crypt_r(PASSWORD, "$6$rounds=100000$saltsaltsalt$", cd));
	snprintf(text, sizeof(text), "alice:%s\n", cd->output);
	free(cd);
	fp = fopen(f->users, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(fixture_reload(f), 0);
	return rc;
}

/* The daemon's CPU time for n wrong passwords of len bytes on one connection. */
static long long cpu_for_attempts(struct fixture *f, int fd, size_t len, int n)
{
	char *attempt = malloc(len + 16);
	long long before;

	assert_non_null(attempt);
	memcpy(attempt, "alice\n", 6);
	memset(attempt + 6, 'x', len);
	memcpy(attempt + 6 + len, "\n", 2);
	before = harness_proc_cpu_ms(f->daemon.pid);
	for (int i = 0; i < n; i++) {
		send_str(fd, attempt);
		expect_str(fd, "incorrect.\nUsername: ");
	}
	free(attempt);
	return harness_proc_cpu_ms(f->daemon.pid) - before;
}

/* A 255-byte password costs what a 128-byte one costs (passwords are checked
 * up to 128 bytes): an attacker cannot choose a dearer check. */
static void an_overlong_password_costs_no_more(void **state)
{
	struct fixture *f = *state;
	int fd = connect_from("127.0.0.1", f->port);
	long long at_limit = 0, overlong = 0;

	expect_str(fd, "Username: ");
	for (int round = 0; round < 3; round++) {
		at_limit += cpu_for_attempts(f, fd, 128, 2);
		overlong += cpu_for_attempts(f, fd, 255, 2);
	}
	print_message("daemon CPU for 6 checks: %lld ms at 128 bytes, %lld ms at 255\n", at_limit,
		      overlong);
	assert_true(overlong * 100 < at_limit * 115);
	close(fd);
}

/* ---- 8. sockets that are not TCP ------------------------------------------- */

/* A unix socket passed in by systemd is refused with a clear error: penalties,
 * caps and logs need a client address. */
static void a_unix_socket_from_systemd_is_refused(void **state)
{
	struct fixture f;
	struct harness_proc p = {0};
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)], daemon[PATH_MAX], err[4096] = "";
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *argv[] = {"/usr/bin/systemd-socket-activate",
			      "-l",
			      sock,
			      "--fdname=test",
			      daemon,
			      "-c",
			      f.conf,
			      NULL};
	ssize_t n;
	int fd, code;

	(void)state;
	if (access(argv[0], X_OK) != 0)
		test_skip("no %s", argv[0]);
	assert_int_equal(fixture_init(&f, users), 0);
	f.upstream_port = 9;
	assert_int_equal(fixture_simple_config(&f, ""), 0);
	assert_true(strlen(f.dir) + 11 < sizeof(sock));
	memcpy(sock, f.dir, strlen(f.dir));
	memcpy(sock + strlen(f.dir), "/gate.sock", 11);
	harness_bin_path("sockgate", daemon, sizeof(daemon));
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	/* systemd-socket-activate starts the daemon on the first connection. */
	memcpy(sun.sun_path, sock, sizeof(sock));
	fd = -1;
	for (long long until = harness_now_ms() + T; fd < 0 && harness_now_ms() < until;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			close(fd);
			fd = -1;
			poll(NULL, 0, 10); /* the socket appears when it is bound */
		}
	}
	assert_true(fd >= 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	n = read(p.err_fd, err, sizeof(err) - 1);
	err[n > 0 ? n : 0] = '\0';
	close(fd);
	code = p.exit_code;
	harness_cleanup(&p);
	fixture_teardown(&f, 0);
	assert_int_equal(code, 1);
	assert_non_null(strstr(err, "socket 3 from systemd for gateway \"test\" is a unix socket"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(empty_lines_are_capped, setup_defaults, teardown),
		cmocka_unit_test_setup_teardown(answers_to_one_read_leave_in_one_write,
						setup_defaults, teardown),
		cmocka_unit_test_setup_teardown(empty_line_flood_does_not_take_the_worker,
						setup_one_worker, teardown),
		cmocka_unit_test_setup_teardown(abandoned_connections_penalise_their_source,
						setup_defaults, teardown),
		cmocka_unit_test_setup_teardown(one_host_gets_a_small_share, setup_defaults,
						teardown),
		cmocka_unit_test_setup_teardown(
			a_host_reconnecting_as_fast_as_it_likes_locks_nobody_out, setup_defaults,
			teardown),
		cmocka_unit_test_setup_teardown(a_connection_flood_is_summarised, setup_defaults,
						teardown),
		cmocka_unit_test_setup_teardown(a_reload_reaches_logins_under_way, setup_defaults,
						teardown),
		cmocka_unit_test_setup_teardown(an_overlong_password_costs_no_more,
						setup_costly_hash, teardown),
		cmocka_unit_test(a_unix_socket_from_systemd_is_refused),
	};

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
