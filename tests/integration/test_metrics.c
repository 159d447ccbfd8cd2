/* test_metrics: the Prometheus endpoint in this process, on loopback: a scrape over
 * a real socket gives the registry's exact values and passes `promtool check
 * metrics`; anything but a small GET /metrics gets a 4xx and a close, the
 * connection cap holds, the listener keeps serving, and its threads take no signals. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "harness.h"
#include "metrics.h"
#include "stats.h"

#define PROMTOOL  "/usr/bin/promtool"
#define RESP_SIZE (1 << 20)

struct fixture {
	struct stats *st;
	struct stats_gateway *ssh;
	struct metrics *m;
	int port;  /* 127.0.0.1 */
	int port6; /* [::1], or 0 where the host has no IPv6 loopback */
	char *resp;
};

static struct sockaddr_in loopback4(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static bool have_ipv6_loopback(void)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* A registry with known values in every kind of series. */
static void fill(struct fixture *f)
{
	struct stats_gateway *tel = stats_gateway_get(f->st, "tel\"net");
	struct stats_gauge_gateway gws[] = {{"ssh", 3, 4}, {"tel\"net", 0, 1}};
	struct stats_gauge_upstream ups[] = {
		{"ssh", "", "127.0.0.1:2222", true},
		{"ssh", "db", "[::1]:2223", false},
	};
	struct stats_gauges g = {gws, 2, ups, 2, 5, 6};

	f->ssh = stats_gateway_get(f->st, "ssh");
	assert_non_null(f->ssh);
	assert_non_null(tel);
	stats_add(&f->ssh->accepted, 17);
	stats_refused(f->ssh, STATS_REFUSED_MAX_SESSIONS);
	stats_add(&f->ssh->logins_ok, 11);
	stats_login_failed(f->ssh, stats_login_reason("bad credentials"));
	stats_add(&f->ssh->bytes_in, 123456789012ULL);
	stats_add(&f->ssh->bytes_out, 42);
	stats_observe_session(f->ssh, 61000);
	stats_inc(&tel->tls_ok);
	stats_observe_check(f->st, 1500);
	assert_int_equal(stats_set_gauges(f->st, &g), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_in a4 = loopback4();
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	const struct sockaddr *addrs[] = {(struct sockaddr *)&a4, (struct sockaddr *)&a6};
	const socklen_t lens[] = {sizeof(a4), sizeof(a6)};
	struct errbuf err = {""};

	assert_non_null(f);
	f->resp = malloc(RESP_SIZE);
	assert_non_null(f->resp);
	f->st = stats_create(&err);
	assert_non_null(f->st);
	fill(f);
	f->m = metrics_start(f->st, addrs, lens, have_ipv6_loopback() ? 2 : 1, &err);
	if (f->m == NULL)
		fail_msg("metrics_start: %s", err.msg);
	f->port = (int)metrics_port(f->m, 0);
	f->port6 = (int)metrics_port(f->m, 1);
	assert_true(f->port > 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	metrics_stop(f->m);
	stats_free(f->st);
	free(f->resp);
	free(f);
	return 0;
}

/* Reads fd into buf until EOF or a reset (what came before it is kept), within the
 * harness's timeout. Returns the byte count, or -1 on timeout. */
static ssize_t read_to_eof(int fd, char *buf, size_t cap)
{
	long long deadline = harness_now_ms() + HARNESS_TIMEOUT_MS;
	size_t len = 0;
	ssize_t n;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - harness_now_ms();

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		n = read(fd, buf + len, cap - 1 - len);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0)
			len += (size_t)n;
		if (len == cap - 1)
			return -1;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

/* Sends req (len bytes) on fd, ignoring a failed send (the server may close on
 * a bad request before it is all sent), and reads the answer until the server
 * closes. Returns the HTTP status, 0 if the server closed without a status
 * line, -1 on timeout. The answer is in resp. */
static int exchange(int fd, const char *req, size_t len, char *resp)
{
	ssize_t n;
	size_t off = 0;

	while (off < len) {
		n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	n = read_to_eof(fd, resp, RESP_SIZE);
	close(fd);
	if (n < 0)
		return -1;
	if (strncmp(resp, "HTTP/1.", 7) != 0)
		return 0;
	return atoi(resp + 9);
}

static int request_port(const char *ip, int port, const char *req, size_t len, char *resp)
{
	int fd = harness_connect(ip, port);

	assert_true(fd >= 0);
	return exchange(fd, req, len, resp);
}

static int request(struct fixture *f, const char *req)
{
	return request_port("127.0.0.1", f->port, req, strlen(req), f->resp);
}

static const char scrape_req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				 "Accept: text/plain\r\nConnection: close\r\n\r\n";

/* The value of a header in an answer (first match, case as sent), or NULL. */
static const char *header(const char *resp, const char *name, char *value, size_t len)
{
	char needle[64];
	const char *p, *end = strstr(resp, "\r\n\r\n");

	snprintf(needle, sizeof(needle), "\r\n%s: ", name);
	p = strstr(resp, needle);
	if (p == NULL || end == NULL || p > end)
		return NULL;
	p += strlen(needle);
	snprintf(value, len, "%.*s", (int)strcspn(p, "\r"), p);
	return value;
}

static const char *body(const char *resp)
{
	const char *p = strstr(resp, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

static void assert_has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("missing line: %s\n--- body:\n%s", line, text);
}

/* A scrape gives the registry's values, with the exposition's content type. */
static void scrape_exact_values(void **state)
{
	struct fixture *f = *state;
	char value[128];
	const char *b;

	assert_int_equal(request(f, scrape_req), 200);
	assert_non_null(header(f->resp, "Content-Type", value, sizeof(value)));
	assert_string_equal(value, "text/plain; version=0.0.4; charset=utf-8");
	assert_non_null(header(f->resp, "Content-Length", value, sizeof(value)));
	b = body(f->resp);
	assert_int_equal(atol(value), strlen(b));

	assert_has_line(b, "sockgate_connections_accepted_total{gateway=\"ssh\"} 17");
	assert_has_line(b, "sockgate_connections_accepted_total{gateway=\"tel\\\"net\"} 0");
	assert_has_line(
		b, "sockgate_connections_refused_total{gateway=\"ssh\",reason=\"max_sessions\"} 1");
	assert_has_line(b, "sockgate_logins_total{gateway=\"ssh\",result=\"ok\"} 11");
	assert_has_line(b, "sockgate_logins_total{gateway=\"ssh\",result=\"failed\",reason=\"bad_"
			   "credentials\"} 1");
	assert_has_line(
		b, "sockgate_relayed_bytes_total{gateway=\"ssh\",direction=\"in\"} 123456789012");
	assert_has_line(b, "sockgate_relayed_bytes_total{gateway=\"ssh\",direction=\"out\"} 42");
	assert_has_line(b, "sockgate_session_duration_seconds_bucket{gateway=\"ssh\",le=\"60\"} 0");
	assert_has_line(b,
			"sockgate_session_duration_seconds_bucket{gateway=\"ssh\",le=\"300\"} 1");
	assert_has_line(b, "sockgate_session_duration_seconds_sum{gateway=\"ssh\"} 61.000");
	assert_has_line(b, "sockgate_session_duration_seconds_count{gateway=\"ssh\"} 1");
	assert_has_line(b, "sockgate_tls_handshakes_total{gateway=\"tel\\\"net\",result=\"ok\"} 1");
	assert_has_line(b, "sockgate_sessions{gateway=\"ssh\",state=\"logging_in\"} 3");
	assert_has_line(b, "sockgate_sessions{gateway=\"ssh\",state=\"relaying\"} 4");
	assert_has_line(b, "sockgate_sessions{gateway=\"tel\\\"net\",state=\"relaying\"} 1");
	assert_has_line(
		b,
		"sockgate_upstream_up{gateway=\"ssh\",target=\"\",upstream=\"127.0.0.1:2222\"} 1");
	assert_has_line(
		b, "sockgate_upstream_up{gateway=\"ssh\",target=\"db\",upstream=\"[::1]:2223\"} 0");
	assert_has_line(b, "sockgate_password_check_queue 5");
	assert_has_line(b, "sockgate_penalised_sources 6");
	assert_has_line(b, "sockgate_password_check_duration_seconds_bucket{le=\"0.001\"} 0");
	assert_has_line(b, "sockgate_password_check_duration_seconds_bucket{le=\"0.0025\"} 1");
	assert_has_line(b, "sockgate_password_check_duration_seconds_sum 0.001500");
	assert_has_line(b, "sockgate_password_check_duration_seconds_count 1");
	assert_has_line(b, "sockgate_build_info{version=\"" SOCKGATE_VERSION "\"} 1");
	/* This process: the listener's threads and the test's sockets at least. */
	assert_non_null(strstr(b, "\nprocess_open_fds "));
	assert_true(atoi(strstr(b, "\nprocess_threads ") + 17) >= 2);

	/* Counters are read at each scrape. */
	stats_add(&f->ssh->accepted, 3);
	assert_int_equal(request(f, scrape_req), 200);
	assert_has_line(body(f->resp), "sockgate_connections_accepted_total{gateway=\"ssh\"} 20");

	if (f->port6 > 0) {
		assert_int_equal(
			request_port("::1", f->port6, scrape_req, strlen(scrape_req), f->resp),
			200);
		assert_has_line(body(f->resp),
				"sockgate_connections_accepted_total{gateway=\"ssh\"} 20");
	}
}

/* promtool parses and lints the text: no error, no warning. */
static void promtool_is_happy(void **state)
{
	struct fixture *f = *state;
	const char *const argv[] = {PROMTOOL, "check", "metrics", NULL};
	struct harness_proc p;
	char out[8192], err[8192];
	ssize_t n_out, n_err;
	const char *b;

	if (access(PROMTOOL, X_OK) != 0)
		test_skip("no %s (Debian's prometheus package)", PROMTOOL);
	assert_int_equal(request(f, scrape_req), 200);
	b = body(f->resp);

	assert_int_equal(harness_spawn(&p, argv, NULL, 0), 0);
	assert_int_equal(harness_write_all(p.in_fd, b, strlen(b), HARNESS_TIMEOUT_MS), 0);
	close(p.in_fd);
	p.in_fd = -1;
	n_out = harness_read_all(p.out_fd, out, sizeof(out) - 1, HARNESS_TIMEOUT_MS);
	n_err = harness_read_all(p.err_fd, err, sizeof(err) - 1, HARNESS_TIMEOUT_MS);
	assert_int_equal(harness_wait_exit(&p, HARNESS_TIMEOUT_MS), 0);
	out[n_out > 0 ? n_out : 0] = '\0';
	err[n_err > 0 ? n_err : 0] = '\0';
	if (p.exit_code != 0 || n_out != 0 || n_err != 0)
		fail_msg("promtool exit %d\nstdout:\n%s\nstderr:\n%s", p.exit_code, out, err);
	harness_cleanup(&p);
}

/* Every refusal is a 4xx that closes the connection; the listener serves on. */
static void refusals(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405},
		{"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413},
		{"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "5\r\nhello\r\n0\r\n\r\n",
		 413},
	};
	char value[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int status = request(f, cases[i].req);

		if (status != cases[i].status)
			fail_msg("%s: status %d, want %d:\n%s", cases[i].req, status,
				 cases[i].status, f->resp);
		if (header(f->resp, "Connection", value, sizeof(value)) == NULL ||
		    strcmp(value, "close") != 0)
			fail_msg("%s: no Connection: close:\n%s", cases[i].req, f->resp);
		if (cases[i].status == 405 &&
		    (header(f->resp, "Allow", value, sizeof(value)) == NULL ||
		     strcmp(value, "GET") != 0))
			fail_msg("%s: no Allow: GET:\n%s", cases[i].req, f->resp);
	}
	assert_int_equal(request(f, scrape_req), 200);
}

/* What is not HTTP, or too big to be a scrape, gets a 4xx from libmicrohttpd (or
 * only a close); the listener serves on. */
static void garbage_and_huge_headers(void **state)
{
	static const char tls_hello[] =
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
	struct fixture *f = *state;
	size_t big = 4 * METRICS_CONNECTION_MEMORY, n;
	char *req = malloc(big + 256);
	int status;

	assert_non_null(req);
	/* A header beyond the connection's memory. */
	n = (size_t)sprintf(req, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(req + n, 'a', big);
	n += big;
	n += (size_t)sprintf(req + n, "\r\n\r\n");
	status = request_port("127.0.0.1", f->port, req, n, f->resp);
	if (status < 400 || status > 499)
		fail_msg("huge header: status %d:\n%.300s", status, f->resp);
	/* A URL as long. */
	n = (size_t)sprintf(req, "GET /");
	memset(req + n, 'u', big);
	n += big;
	n += (size_t)sprintf(req + n, " HTTP/1.1\r\nHost: x\r\n\r\n");
	status = request_port("127.0.0.1", f->port, req, n, f->resp);
	if (status < 400 || status > 499)
		fail_msg("huge URL: status %d:\n%.300s", status, f->resp);
	free(req);

	/* A TLS ClientHello's start, NUL bytes and all. */
	status = request_port("127.0.0.1", f->port, tls_hello, sizeof(tls_hello) - 1, f->resp);
	if (status != 0 && (status < 400 || status > 499))
		fail_msg("TLS garbage: status %d:\n%.300s", status, f->resp);
	status = request(f, "HELLO\r\n\r\n");
	if (status != 0 && (status < 400 || status > 499))
		fail_msg("garbage: status %d:\n%.300s", status, f->resp);
	/* HTTP/1.1 without Host (strict mode). */
	assert_int_equal(request(f, "GET /metrics HTTP/1.1\r\n\r\n"), 400);
	assert_int_equal(request(f, scrape_req), 200);
}

/* Scrapes on one kept-alive connection: Prometheus reuses its connections. */
static void keep_alive(void **state)
{
	struct fixture *f = *state;
	static const char two[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	const char *second;

	assert_int_equal(request(f, two), 200);
	second = strstr(f->resp + 1, "HTTP/1.1 200");
	assert_non_null(second);
	assert_null(strstr(second + 1, "HTTP/1.1 "));
}

/* Reads one answer with a Content-Length from a connection that stays open.
 * Returns its status, or -1 on timeout, EOF or a malformed answer. */
static int read_response(int fd, char *resp)
{
	long long deadline = harness_now_ms() + HARNESS_TIMEOUT_MS;
	size_t len = 0, want = 0;
	char value[32];
	char *end;
	ssize_t n;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - harness_now_ms();

		resp[len] = '\0';
		end = strstr(resp, "\r\n\r\n");
		if (end != NULL && want == 0) {
			if (header(resp, "Content-Length", value, sizeof(value)) == NULL)
				return -1;
			want = (size_t)(end + 4 - resp) + (size_t)atol(value);
		}
		if (want != 0 && len >= want)
			return len == want && strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9)
										 : -1;
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		n = read(fd, resp + len, RESP_SIZE - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
}

/* Connections waiting in the accept queue of the listening socket on 127.0.0.1:
 * port (rx_queue of its line in /proc/net/tcp), or -1. */
static long accept_queue(int port)
{
	unsigned addr, lport, st;
	unsigned long tx, rx;
	char line[512];
	long queued = -1;
	FILE *f = fopen("/proc/net/tcp", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, " %*u: %x:%x %*x:%*x %x %lx:%lx", &addr, &lport, &st, &tx, &rx) ==
			    5 &&
		    lport == (unsigned)port && st == 0x0A /* LISTEN */)
			queued = (long)rx;
	fclose(f);
	return queued;
}

/* The kernel reports no event for a change of the accept queue: re-read it every
 * 10 ms until it holds want connections. Returns 0, or -1 on timeout. */
static int wait_accept_queue(int port, long want)
{
	long long deadline = harness_now_ms() + HARNESS_TIMEOUT_MS;

	while (accept_queue(port) != want) {
		if (harness_now_ms() > deadline)
			return -1;
		poll(NULL, 0, 10);
	}
	return 0;
}

/* Beyond METRICS_MAX_CONNECTIONS, a connection waits in the kernel's queue until
 * one of those admitted goes; those admitted are served meanwhile. */
static void connection_cap(void **state)
{
	struct fixture *f = *state;
	static const char keep[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	int fds[METRICS_MAX_CONNECTIONS], extra, i;

	/* From as many addresses as the per-address cap asks for. */
	for (i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
		char src[32];

		snprintf(src, sizeof(src), "127.0.0.%d",
			 10 + i / METRICS_MAX_CONNECTIONS_PER_ADDRESS);
		fds[i] = harness_connect_from(src, "127.0.0.1", f->port);
		assert_true(fds[i] >= 0);
	}
	extra = harness_connect_from("127.0.0.40", "127.0.0.1", f->port);
	assert_true(extra >= 0);
	assert_int_equal(wait_accept_queue(f->port, 1), 0);
	/* The listener went round its loop to serve this, and still left extra. */
	assert_int_equal(harness_write_all(fds[0], keep, strlen(keep), HARNESS_TIMEOUT_MS), 0);
	assert_int_equal(read_response(fds[0], f->resp), 200);
	assert_int_equal(accept_queue(f->port), 1);

	close(fds[0]);
	assert_int_equal(exchange(extra, scrape_req, strlen(scrape_req), f->resp), 200);
	for (i = 1; i < METRICS_MAX_CONNECTIONS; i++)
		assert_int_equal(exchange(fds[i], scrape_req, strlen(scrape_req), f->resp), 200);
}

/* One address gets METRICS_MAX_CONNECTIONS_PER_ADDRESS connections: the next
 * is closed at once, and the others (and other addresses) are served. */
static void per_address_cap(void **state)
{
	struct fixture *f = *state;
	int fds[METRICS_MAX_CONNECTIONS_PER_ADDRESS], over, other, i;
	char c;

	for (i = 0; i < METRICS_MAX_CONNECTIONS_PER_ADDRESS; i++) {
		fds[i] = harness_connect_from("127.0.0.50", "127.0.0.1", f->port);
		assert_true(fds[i] >= 0);
	}
	over = harness_connect_from("127.0.0.50", "127.0.0.1", f->port);
	assert_true(over >= 0);
	assert_int_equal(harness_read_some(over, &c, 1, HARNESS_TIMEOUT_MS), 0);
	close(over);
	other = harness_connect_from("127.0.0.51", "127.0.0.1", f->port);
	assert_true(other >= 0);
	assert_int_equal(exchange(other, scrape_req, strlen(scrape_req), f->resp), 200);
	for (i = 0; i < METRICS_MAX_CONNECTIONS_PER_ADDRESS; i++)
		assert_int_equal(exchange(fds[i], scrape_req, strlen(scrape_req), f->resp), 200);
}

/* Signals are for the main thread's signalfd: every other thread blocks them
 * all, and metrics_start() leaves the caller's mask as it was. */
static void threads_block_signals(void **state)
{
	struct fixture *f = *state;
	char path[64], line[256];
	unsigned long long blocked, want;
	sigset_t mine;
	int threads = 0, tid;
	struct dirent *e;
	DIR *dir;

	assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &mine), 0);
	assert_int_equal(sigismember(&mine, SIGTERM), 0);
	want = 1ULL << (SIGHUP - 1) | 1ULL << (SIGINT - 1) | 1ULL << (SIGTERM - 1) |
	       1ULL << (SIGUSR1 - 1) | 1ULL << (SIGUSR2 - 1) | 1ULL << (SIGCHLD - 1) |
	       1ULL << (SIGPIPE - 1) | 1ULL << (SIGALRM - 1);
	dir = opendir("/proc/self/task");
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL) {
		FILE *status;

		tid = atoi(e->d_name);
		if (tid <= 0 || tid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
		status = fopen(path, "r");
		assert_non_null(status);
		blocked = 0;
		while (fgets(line, sizeof(line), status) != NULL)
			sscanf(line, "SigBlk: %llx", &blocked);
		fclose(status);
		if ((blocked & want) != want)
			fail_msg("thread %d blocks only %llx", tid, blocked);
		threads++;
	}
	closedir(dir);
	assert_true(threads >= (f->port6 > 0 ? 2 : 1));
}

/* A busy address fails the start, and nothing stays listening. */
static void bind_failure(void **state)
{
	struct sockaddr_in free4 = loopback4(), busy = loopback4();
	const struct sockaddr *addrs[] = {(struct sockaddr *)&free4, (struct sockaddr *)&busy};
	const socklen_t lens[] = {sizeof(free4), sizeof(busy)};
	struct errbuf err = {""};
	struct stats *st = stats_create(&err);
	int lfd, port, fd;

	assert_non_null(st);
	lfd = harness_listen("127.0.0.1", &port);
	assert_true(lfd >= 0);
	busy.sin_port = htons((uint16_t)port);
	/* The first address on a port that is free now and must be free again after. */
	fd = harness_listen("127.0.0.1", &port);
	assert_true(fd >= 0);
	close(fd);
	free4.sin_port = htons((uint16_t)port);

	assert_null(metrics_start(st, addrs, lens, 2, &err));
	assert_non_null(strstr(err.msg, "cannot bind"));
	assert_non_null(strstr(err.msg, "Address already in use"));
	assert_int_equal(harness_connect("127.0.0.1", port), -1);
	close(lfd);
	stats_free(st);
	metrics_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(scrape_exact_values),
		cmocka_unit_test(promtool_is_happy),
		cmocka_unit_test(refusals),
		cmocka_unit_test(garbage_and_huge_headers),
		cmocka_unit_test(keep_alive),
		cmocka_unit_test(connection_cap),
		cmocka_unit_test(per_address_cap),
		cmocka_unit_test(threads_block_signals),
	};
	const struct CMUnitTest alone[] = {
		cmocka_unit_test(bind_failure),
	};
	int failures;

	signal(SIGPIPE, SIG_IGN);
	failures = cmocka_run_group_tests_name("metrics", tests, setup, teardown);
	failures += cmocka_run_group_tests_name("metrics start", alone, NULL, NULL);
	return test_exit(failures);
}
