/* test_scale: the hostile-clients defences proved at the scale the product
 * promises, on loopback, with the real daemon. Too long for the test suite
 * (several minutes); run it with tests/scale/run.sh, which records the figures
 * it prints. SECURITY.md quotes them.
 *
 *   1. 10,000 logged-in sessions (waves of 1,000 at once, each from a host of
 *      its own) with random client and upstream resets: every transfer that
 *      was not reset comes back byte-exact, every one that ended early was
 *      ended by a reset, and the daemon holds no descriptor more afterwards.
 *   2. A legitimate login beside 5,000 idle unauthenticated connections from
 *      5,000 other hosts completes in under 2 s (shipped defaults).
 *   3. A brute-forcing host is refused after at most 10 failures while other
 *      hosts log in (shipped defaults).
 *   4. An unknown user costs what a wrong password costs, within 5 %
 *      (failure_delay = 0). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"
#include "flows.h"

#define PASSWORD "Correct-Horse-7"
#define T        FIXTURE_TIMEOUT_MS
#define SEED     0x5ca1ab1eULL

static const char *const users[] = {"alice", PASSWORD, NULL};
static const char credentials[] = "alice\n" PASSWORD "\n";

/* ---- an echo upstream that resets some connections ----------------------- */

/* Echoes every connection on one epoll thread; a share of them (reset_per_mille)
 * it resets (RST) after a random number of echoed bytes below reset_below. */
struct echo {
	int lfd, ep, port;
	pthread_t thread;
	bool stop;
	unsigned reset_per_mille;
	size_t reset_below;
	uint64_t rng;
	unsigned long resets; /* atomic: connections it reset */
};

struct echo_conn {
	int fd;
	size_t echoed, reset_at;
	char pending[16384];
	size_t off, len;
};

static void echo_close(struct echo *e, struct echo_conn *c, bool reset)
{
	epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (reset) {
		flows_reset_close(c->fd);
		__atomic_add_fetch(&e->resets, 1, __ATOMIC_RELAXED);
	} else {
		close(c->fd);
	}
	free(c);
}

/* Writes what is pending, then reads and echoes until blocked; false once
 * the connection is gone. */
static bool echo_pump(struct echo *e, struct echo_conn *c)
{
	for (;;) {
		ssize_t n;

		while (c->len > 0) {
			n = send(c->fd, c->pending + c->off, c->len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == EAGAIN)
				return true;
			if (n <= 0) {
				echo_close(e, c, false);
				return false;
			}
			c->off += (size_t)n;
			c->len -= (size_t)n;
			c->echoed += (size_t)n;
			if (c->echoed >= c->reset_at) {
				echo_close(e, c, true);
				return false;
			}
		}
		n = recv(c->fd, c->pending, sizeof(c->pending), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n == 0) {
			shutdown(c->fd, SHUT_WR); /* the client is done: so are we, after it */
			echo_close(e, c, false);
			return false;
		}
		if (n < 0) {
			echo_close(e, c, false);
			return false;
		}
		c->off = 0;
		c->len = (size_t)n;
		if (c->echoed + c->len > c->reset_at)
			c->len = c->reset_at - c->echoed;
	}
}

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	struct epoll_event evs[256];

	while (!__atomic_load_n(&e->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(e->ep, evs, 256, 50);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				int fd;

				while ((fd = accept4(e->lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct echo_conn *c = calloc(1, sizeof(*c));
					struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT |
									   EPOLLET};

					c->fd = fd;
					c->reset_at = FLOW_NEVER;
					if (flows_rng_next(&e->rng) % 1000 < e->reset_per_mille)
						c->reset_at = 1 + flows_rng_next(&e->rng) %
									  e->reset_below;
					ev.data.ptr = c;
					epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev);
					(void)echo_pump(e, c);
				}
				continue;
			}
			(void)echo_pump(e, evs[i].data.ptr);
		}
	}
	return NULL;
}

static void echo_start(struct echo *e, unsigned reset_per_mille, size_t reset_below)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

	memset(e, 0, sizeof(*e));
	e->rng = SEED;
	e->reset_per_mille = reset_per_mille;
	e->reset_below = reset_below;
	e->lfd = harness_listen("127.0.0.1", &e->port);
	assert_true(e->lfd >= 0);
	assert_int_equal(fcntl(e->lfd, F_SETFL, O_NONBLOCK), 0);
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(e->ep >= 0);
	assert_int_equal(epoll_ctl(e->ep, EPOLL_CTL_ADD, e->lfd, &ev), 0);
	assert_int_equal(pthread_create(&e->thread, NULL, echo_main, e), 0);
}

static void echo_stop(struct echo *e)
{
	__atomic_store_n(&e->stop, true, __ATOMIC_RELEASE);
	pthread_join(e->thread, NULL);
	close(e->lfd);
	close(e->ep); /* connections still open are the daemon's to close: none by now */
}

/* ---- the daemon ----------------------------------------------------------- */

struct ctx {
	struct fixture f;
	struct echo echo;
	bool echo_on;
};

static void raise_fd_limit(void)
{
	struct rlimit rl;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static int start(void **state, const char *top, const char *extra, bool echo)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	*state = c;
	raise_fd_limit();
	assert_int_equal(fixture_init(&c->f, users), 0);
	if (echo) {
		echo_start(&c->echo, 100, 32 * 1024);
		c->echo_on = true;
		c->f.upstream_port = c->echo.port;
	} else {
		assert_int_equal(fixture_upstream(&c->f, NULL), 0);
	}
	assert_int_equal(fixture_config(&c->f, top, extra), 0);
	assert_int_equal(fixture_start(&c->f), 0);
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	int rc = fixture_finish(&c->f, PASSWORD);

	if (c->echo_on)
		echo_stop(&c->echo);
	free(c);
	assert_int_equal(rc, 0);
	return 0;
}

/* ---- 1. 10,000 sessions with resets ---------------------------------------- */

/* Logs n clients in at once, each from a host of its own (source numbers from
 * first), all their password checks queued together. */
static void login_wave(int port, int *fds, size_t n, unsigned first)
{
	struct pollfd *p = calloc(n, sizeof(*p));
	char(*got)[128] = calloc(n, sizeof(*got));
	size_t *len = calloc(n, sizeof(*len)), done = 0;
	long long deadline = flows_now_ms() + 120000;

	assert_true(p != NULL && got != NULL && len != NULL);
	for (size_t i = 0; i < n; i++) {
		char src[32];

		harness_loopback_source(first + (unsigned)i, src, sizeof(src));
		fds[i] = harness_connect_from(src, "127.0.0.1", port);
		assert_true(fds[i] >= 0);
		send_str(fds[i], credentials);
		p[i] = (struct pollfd){fds[i], POLLIN, 0};
	}
	while (done < n) {
		assert_true(poll(p, n, flows_ms_until(deadline)) > 0);
		for (size_t i = 0; i < n; i++) {
			ssize_t k;

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			k = recv(fds[i], got[i] + len[i], sizeof(got[i]) - 1 - len[i],
				 MSG_DONTWAIT);
			if (k <= 0)
				fail_msg("client %zu: no login (%s)", i,
					 k == 0 ? "EOF" : strerror(errno));
			len[i] += (size_t)k;
			got[i][len[i]] = '\0';
			if (strstr(got[i], "You are now logged in.\n") != NULL) {
				/* The prompts and the success message, nothing more yet. */
				p[i].fd = -1;
				done++;
			} else if (len[i] >= sizeof(got[i]) - 1) {
				fail_msg("client %zu: unexpected answer \"%s\"", i, got[i]);
			}
		}
	}
	free(p);
	free(got);
	free(len);
}

static int wait_fds(pid_t pid, int want, int timeout_ms)
{
	long long deadline = flows_now_ms() + timeout_ms;
	int n;

	/* Nothing tells when the daemon has closed a socket: /proc is re-read. */
	while ((n = harness_proc_fd_count(pid)) != want && flows_now_ms() < deadline)
		poll(NULL, 0, 10);
	return n;
}

static int setup_sessions(void **state)
{
	return start(state, "limits = { auth_queue = 2048; };", "", true);
}

static void ten_thousand_sessions_with_resets(void **state)
{
	enum { WAVES = 10, WAVE = 1000 };
	const size_t len = 32 * 1024;
	struct ctx *c = *state;
	struct flow *fl = calloc(WAVE, sizeof(*fl));
	unsigned char *out = malloc(WAVE * len), *in = malloc(WAVE * len);
	int *fds = calloc(WAVE, sizeof(*fds)), fds_at_start;
	unsigned long completed = 0, client_resets = 0, early = 0;
	uint64_t rng = SEED;
	long long t0 = flows_now_ms();

	assert_true(fl != NULL && out != NULL && in != NULL && fds != NULL);
	fds_at_start = harness_proc_fd_count(c->f.daemon.pid);
	for (unsigned w = 0; w < WAVES; w++) {
		login_wave(c->f.port, fds, WAVE, w * WAVE);
		for (size_t i = 0; i < WAVE; i++) {
			flows_pattern(SEED + w * WAVE + i, 0, out + i * len, len);
			flow_init(&fl[i], fds[i], out + i * len, len, in + i * len, len);
			if (flows_rng_next(&rng) % 10 == 0)
				fl[i].reset_at = flows_rng_next(&rng) % (2 * len);
		}
		assert_int_equal(flows_pump(fl, WAVE, NULL, 300000), 0);
		for (size_t i = 0; i < WAVE; i++) {
			const struct flow *f = &fl[i];

			if (f->reset) {
				client_resets++;
			} else if (f->error == 0 && f->got == len) {
				if (memcmp(f->in, f->out, len) != 0)
					fail_msg("session %zu of wave %u: echo differs", i, w);
				completed++;
			} else {
				/* Ended early: the upstream's reset, and what came
				 * before it is exact. */
				if (memcmp(f->in, f->out, f->got) != 0)
					fail_msg("session %zu of wave %u: the bytes before the end "
						 "differ",
						 i, w);
				early++;
			}
		}
		if (wait_fds(c->f.daemon.pid, fds_at_start, T) != fds_at_start)
			fail_msg("after wave %u the daemon holds %d descriptors, not %d", w,
				 harness_proc_fd_count(c->f.daemon.pid), fds_at_start);
	}
	print_message("SCALE sessions: %d logged in and relayed in %lld ms; %lu byte-exact, "
		      "%lu reset by the client, %lu ended by an upstream reset (the upstream "
		      "reset %lu); daemon descriptors %d before and after\n",
		      WAVES * WAVE, flows_now_ms() - t0, completed, client_resets, early,
		      __atomic_load_n(&c->echo.resets, __ATOMIC_RELAXED), fds_at_start);
	assert_int_equal(completed + client_resets + early, WAVES * WAVE);
	assert_true(early <= __atomic_load_n(&c->echo.resets, __ATOMIC_RELAXED));
	assert_true(early > 0 && client_resets > 0);
	free(fl);
	free(out);
	free(in);
	free(fds);
}

/* ---- 2. a login beside 5,000 idle connections ------------------------------ */

static int setup_defaults(void **state)
{
	return start(state, NULL, "", false);
}

static void login_beside_5000_idle(void **state)
{
	enum { N = 5000 };
	struct ctx *c = *state;
	int *fds = calloc(N, sizeof(*fds)), fd;
	char buf[4096];
	long long t0, took;

	assert_non_null(fds);
	for (int i = 0; i < N; i++) {
		char src[32];

		harness_loopback_source(20000 + (unsigned)i, src, sizeof(src));
		fds[i] = harness_connect_from(src, "127.0.0.1", c->f.port);
		assert_true(fds[i] >= 0);
		send_str(fds[i], "a"); /* a byte, then silence */
	}
	for (int i = 0; i < N; i++)
		expect_str(fds[i], "Username: ");
	t0 = flows_now_ms();
	fd = harness_connect("127.0.0.1", c->f.port);
	assert_true(fd >= 0);
	send_str(fd, "alice\n" PASSWORD "\nhello\n");
	assert_true(fixture_expect(fd, "I got your message: hello\n", buf, sizeof(buf), T) > 0);
	took = flows_now_ms() - t0;
	print_message("SCALE idle: a login and its first answer took %lld ms beside %d idle "
		      "unauthenticated connections from %d hosts\n",
		      took, N, N);
	assert_true(took < 2000);
	close(fd);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	free(fds);
}

/* ---- 3. a brute-forcing host ---------------------------------------------- */

struct others {
	int port;
	bool stop;
	unsigned ok, failed;
};

static void *others_log_in(void *arg)
{
	struct others *o = arg;

	for (unsigned i = 0; !__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE); i++) {
		char src[32];
		int fd;

		harness_loopback_source(40000 + i, src, sizeof(src));
		fd = harness_connect_from(src, "127.0.0.1", o->port);
		if (fd >= 0 && harness_write_all(fd, credentials, strlen(credentials), T) == 0) {
			char buf[512];

			if (fixture_expect(fd, "You are now logged in.\n", buf, sizeof(buf), T) > 0)
				o->ok++;
			else
				o->failed++;
		} else {
			o->failed++;
		}
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static void brute_force_refused_within_10_failures(void **state)
{
	struct ctx *c = *state;
	struct others o = {.port = c->f.port};
	unsigned failures = 0;
	bool refused = false;
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, others_log_in, &o), 0);
	while (!refused && failures <= 20) {
		int fd = harness_connect_from("127.0.0.50", "127.0.0.1", c->f.port);
		char buf[4096];

		assert_true(fd >= 0);
		assert_int_equal(harness_read_exact(fd, buf, 10, T), 0);
		if (memcmp(buf, "Too many f", 10) == 0) {
			refused = true;
		} else {
			/* Attempts on this connection until it is closed. */
			for (int a = 0; a < 3; a++) {
				send_str(fd, "alice\nguess\n");
				if (fixture_expect(fd, "incorrect.\n", buf, sizeof(buf), T) < 0)
					break;
				failures++;
			}
		}
		close(fd);
	}
	__atomic_store_n(&o.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	print_message("SCALE brute force: refused after %u failed logins; meanwhile %u other "
		      "hosts logged in, %u failed\n",
		      failures, o.ok, o.failed);
	assert_true(refused);
	assert_true(failures <= 10);
	assert_true(o.ok > 0);
	assert_int_equal(o.failed, 0);
}

/* ---- 4. unknown users cost what wrong passwords cost ------------------------- */

static int setup_timing(void **state)
{
	return start(state, "penalties = { enabled = false; };\nauth_threads = 1;",
		     "login = { max_attempts = 100; failure_delay = 0; };", false);
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void unknown_user_within_5_percent(void **state)
{
	enum { N = 200 };
	struct ctx *c = *state;
	long long wrong[N], unknown[N], mw, mu;
	int fd = -1;

	for (int i = 0; i < 2 * N; i++) {
		const char *attempt = i % 2 ? "nobody-here\nguess\n" : "alice\nguess\n";
		long long t0;

		if (i % 90 == 0) { /* max_attempts is 100 */
			if (fd >= 0)
				close(fd);
			fd = harness_connect("127.0.0.1", c->f.port);
			assert_true(fd >= 0);
			expect_str(fd, "Username: ");
		}
		t0 = now_us();

		send_str(fd, attempt);
		expect_str(fd, "incorrect.\nUsername: ");
		(i % 2 ? unknown : wrong)[i / 2] = now_us() - t0;
	}
	close(fd);
	qsort(wrong, N, sizeof(wrong[0]), cmp_ll);
	qsort(unknown, N, sizeof(unknown[0]), cmp_ll);
	mw = wrong[N / 2];
	mu = unknown[N / 2];
	print_message("SCALE timing: median answer over %d each, interleaved: wrong password "
		      "%lld us, unknown user %lld us (%+.1f %%)\n",
		      N, mw, mu, 100.0 * (double)(mu - mw) / (double)mw);
	assert_true(llabs(mu - mw) * 100 <= 5 * (mw > mu ? mw : mu));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(ten_thousand_sessions_with_resets, setup_sessions,
						teardown),
		cmocka_unit_test_setup_teardown(login_beside_5000_idle, setup_defaults, teardown),
		cmocka_unit_test_setup_teardown(brute_force_refused_within_10_failures,
						setup_defaults, teardown),
		cmocka_unit_test_setup_teardown(unknown_user_within_5_percent, setup_timing,
						teardown),
	};

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
