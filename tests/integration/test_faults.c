/* test_faults: sockgate when things go wrong, with real processes on loopback: upstreams
 * that refuse, blackhole, reset or hang up early; clients that reset at every stage; a
 * thousand sessions with random resets; a SIGHUP storm under load; SIGKILL and a restart on
 * the same port; descriptor exhaustion; memory behind a slow upstream. Every test ends with
 * the daemon having logged each session's end and holding exactly the descriptors it started
 * with, and it must then exit 0 on SIGTERM (under ASan: no leak, no memory error). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"
#include "flows.h"

#define PASSWORD "s3cr3t-Pw!x"
#define T        FIXTURE_TIMEOUT_MS
#define KiB      ((size_t)1024)
#define MiB      (1024 * KiB)
#define NEVER    FLOW_NEVER
/* Random choices come from this seed, so a failure can be replayed. */
#define SEED 0x5eed0f5a17ULL

static const char *const users[] = {"alice", PASSWORD, NULL};
static const char credentials[] = "alice\n" PASSWORD "\n";

/* ---- time, test data ---------------------------------------------------- */

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long now_ms(void)
{
	return now_us() / 1000;
}

/* Milliseconds until deadline, never negative: a poll() timeout. */
/* ---- the daemon seen from /proc ----------------------------------------- */

/* What each of pid's descriptors is, on stderr: for a failure message. */
static void proc_fd_dump(pid_t pid)
{
	char path[64], link[PATH_MAX + 64], target[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	d = opendir(path);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "  fd %s -> %s\n", de->d_name, target);
	}
	closedir(d);
}

/* VmRSS of pid in KiB, or -1. */
static long proc_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Whether a TCP socket with local port port is in TIME_WAIT (state 06 in /proc/net/tcp). */
static bool time_wait_on(int port)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/net/tcp", "re");

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		unsigned lport, st;

		if (sscanf(line, " %*d: %*x:%x %*x:%*x %x", &lport, &st) == 2)
			found = (int)lport == port && st == 0x06;
	}
	fclose(f);
	return found;
}

/* ---- the daemon's notifications ----------------------------------------- */

/* The daemon's sd_notify messages, one line each in a logtap. A thread keeps reading them:
 * once ten wait unread (net.unix.max_dgram_qlen), the daemon's main loop blocks in
 * sd_notify(), and the long tests here produce more (STATUS= every second, reloads). */
struct notetap {
	int sock;
	int pipe_w;
	int stop[2];
	pthread_t thread;
	struct logtap *log;
};

static void *notetap_thread(void *arg)
{
	struct notetap *n = arg;
	char buf[4096];

	for (;;) {
		struct pollfd p[2] = {{n->sock, POLLIN, 0}, {n->stop[0], POLLIN, 0}};
		ssize_t len;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents != 0)
			break;
		len = recv(n->sock, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (len < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (len <= 0)
			break;
		buf[len++] = '\n';
		if (write(n->pipe_w, buf, (size_t)len) != len)
			break;
	}
	return NULL;
}

static int notetap_start(struct notetap *n, int sock)
{
	int p[2];

	n->sock = sock;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(n->stop, O_CLOEXEC) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	n->pipe_w = p[1];
	n->log = logtap_start(p[0]);
	if (n->log == NULL || pthread_create(&n->thread, NULL, notetap_thread, n) != 0) {
		logtap_stop(n->log);
		close(p[1]);
		close(n->stop[0]);
		close(n->stop[1]);
		return -1;
	}
	return 0;
}

static void notetap_stop(struct notetap *n)
{
	(void)!write(n->stop[1], "x", 1);
	pthread_join(n->thread, NULL);
	close(n->pipe_w);
	logtap_stop(n->log);
	close(n->stop[0]);
	close(n->stop[1]);
	n->log = NULL;
}

/* ---- per-test state ------------------------------------------------------ */

struct ctx {
	struct fixture f;
	struct notetap notes;
	bool notes_on;
	bool settled;     /* the test got to its final check */
	int fds_at_start; /* the daemon's descriptors right after start-up */
	void **mem;       /* test_alloc()'s blocks, freed by the teardown */
	size_t n_mem;
};

/* Zeroed memory that lives until the teardown, so a failing assertion leaks nothing (which
 * LeakSanitizer would report on top of the failure). */
static void *test_alloc(struct ctx *c, size_t size)
{
	void **mem = realloc(c->mem, (c->n_mem + 1) * sizeof(*mem));

	assert_non_null(mem);
	c->mem = mem;
	mem[c->n_mem] = calloc(1, size);
	assert_non_null(mem[c->n_mem]);
	return mem[c->n_mem++];
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	*state = c;
	assert_int_equal(fixture_init(&c->f, users), 0);
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	int rc;

	/* A test that failed while the daemon was frozen (freeze()) left it stopped. */
	if (c->f.daemon.pid > 0)
		(void)kill(c->f.daemon.pid, SIGCONT);
	rc = c->f.daemon.pid > 0 ? fixture_stop(&c->f) : 0;
	int leaked = c->f.log != NULL && logtap_contains(c->f.log, PASSWORD);

	if (c->notes_on)
		notetap_stop(&c->notes);
	/* A clean exit after every test: under ASan this also proves no leak and no memory
	 * error happened anywhere in the daemon. */
	fixture_teardown(&c->f, rc != 0 || leaked || !c->settled);
	for (size_t i = 0; i < c->n_mem; i++)
		free(c->mem[i]);
	free(c->mem);
	free(c);
	assert_int_equal(rc, 0);
	assert_false(leaked);
	return 0;
}

/* The descriptors of an idle daemon. sd_notify() opens a socket for each message and closes
 * it just after sending, so the READY=1 just seen (or a STATUS=) may still hold one: two
 * reads 2 ms apart must agree. No event tells when the close happened. */
static int stable_fd_count(pid_t pid)
{
	int n = harness_proc_fd_count(pid);

	for (int i = 0; i < 100; i++) {
		int m;

		poll(NULL, 0, 2);
		m = harness_proc_fd_count(pid);
		if (m == n)
			return n;
		n = m;
	}
	return -1;
}

/* Starts the daemon on the written configuration (under the command prefix, if not NULL)
 * and notes how many descriptors it holds when ready. */
static void start_daemon(struct ctx *c, const char *const prefix[])
{
	assert_int_equal(fixture_start_with(&c->f, prefix), 0);
	assert_int_equal(notetap_start(&c->notes, c->f.notify_fd), 0);
	c->notes_on = true;
	c->fds_at_start = stable_fd_count(c->f.daemon.pid);
	assert_true(c->fds_at_start > 0);
}

/* After the daemon died: reaps it and starts a new one on the same configuration. */
static void restart_daemon(struct ctx *c)
{
	notetap_stop(&c->notes);
	c->notes_on = false;
	harness_cleanup(&c->f.daemon);
	logtap_stop(c->f.log);
	c->f.log = NULL;
	c->f.cursor = 0;
	close(c->f.notify_fd);
	c->f.notify_fd = -1;
	start_daemon(c, NULL);
}

/* Waits for the READY=1 that ends a reload which began at or after since_us: RELOADING=1
 * carries the reload's start as MONOTONIC_USEC=, on the clock the test reads too. */
static void wait_reloaded_since(struct ctx *c, long long since_us)
{
	char line[256];
	size_t cursor = 0;

	for (int i = 0;; i++) {
		if (i == 10000 || logtap_wait(c->notes.log, "MONOTONIC_USEC=", &cursor, line,
					      sizeof(line), T) < 0)
			fail_msg("no reload began after the last SIGHUP");
		if (strtoll(strchr(line, '=') + 1, NULL, 10) >= since_us)
			break;
	}
	if (logtap_wait(c->notes.log, "READY=1", &cursor, NULL, 0, T) < 0)
		fail_msg("the last reload never sent READY=1");
}

static void reload(struct ctx *c)
{
	long long sent = now_us();

	assert_int_equal(kill(c->f.daemon.pid, SIGHUP), 0);
	wait_reloaded_since(c, sent);
}

/* The end of every test, once all its clients are gone: the daemon has logged exactly n
 * "session closed" lines and holds the descriptors it started with. It closes a session's
 * sockets just after writing the line, and no event tells when: /proc is re-read every
 * 5 ms, up to T. */
static void expect_settled(struct ctx *c, unsigned n)
{
	pid_t pid = c->f.daemon.pid;
	long long deadline;
	size_t cursor = 0;
	int fds;

	for (unsigned i = 0; i < n; i++)
		if (logtap_wait(c->f.log, "session closed", &cursor, NULL, 0, T) < 0)
			fail_msg("%u of %u sessions logged \"session closed\"", i, n);
	assert_int_equal(logtap_count(c->f.log, "session closed"), n);
	deadline = now_ms() + T;
	for (;;) {
		fds = harness_proc_fd_count(pid);
		if (fds == c->fds_at_start || now_ms() >= deadline)
			break;
		poll(NULL, 0, 5);
	}
	if (fds != c->fds_at_start) {
		proc_fd_dump(pid);
		fail_msg("the daemon holds %d descriptors, %d right after start", fds,
			 c->fds_at_start);
	}
	c->settled = true;
}

/* ---- configuration ------------------------------------------------------- */

/* One gateway: listens on listen, tries upstreams (a list body such as
 * "\"127.0.0.1:1\", \"127.0.0.1:2\"") in order, with extra settings. Returns buf. */
static const char *gateway(struct ctx *c, char *buf, size_t len, const char *name,
			   const char *listen, const char *upstreams, const char *extra)
{
	snprintf(buf, len,
		 "{ name = \"%s\"; listen = \"%s\"; upstream = ( %s );\n"
		 "  credentials = \"%s\"; %s }",
		 name, listen, upstreams, c->f.users, extra);
	return buf;
}

/* A configuration of one or two gateways. */
/* Every client of these tests is 127.0.0.1, one source: the per-source defences (tested in
 * test_defences and test_hostile) would only refuse the load these tests put on the daemon,
 * and the tests count every session's "session closed" line. */
#define ONE_HOST_LOAD                                                                              \
	"limits = { per_source_startups = 0; };\npenalties = { noauth = 0; };\n"                   \
	"log_limits = { per_source = 0; };\n"

static void write_gateways(struct ctx *c, const char *g1, const char *g2)
{
	char text[5 * PATH_MAX];

	snprintf(text, sizeof(text), "%sgateways = (\n  %s%s%s\n);\n", ONE_HOST_LOAD, g1,
		 g2 != NULL ? ",\n  " : "", g2 != NULL ? g2 : "");
	assert_int_equal(fixture_write_config(&c->f, text), 0);
}

/* The usual gateway "t" on 127.0.0.1:0 in front of the fixture's upstream. */
static void write_simple(struct ctx *c, const char *extra)
{
	char g[2 * PATH_MAX], up[32];

	snprintf(up, sizeof(up), "\"127.0.0.1:%d\"", c->f.upstream_port);
	write_gateways(c, gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, extra), NULL);
}

/* The port of gateway name's listener on 127.0.0.1, from its "listening" line. */
static int gateway_port(struct ctx *c, const char *name)
{
	char needle[128], line[512];
	size_t cursor = 0;

	snprintf(needle, sizeof(needle), "listening gateway=%s listen=127.0.0.1:", name);
	if (logtap_wait(c->f.log, needle, &cursor, line, sizeof(line), T) < 0)
		return -1;
	return atoi(strstr(line, needle) + strlen(needle));
}

/* ---- client helpers ------------------------------------------------------ */

static int local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	return ntohs(sa.sin_port);
}

/* Reads and drops what fd receives until EOF (returns 0) or a reset (returns ECONNRESET);
 * -1 on timeout or another error. Adds the bytes to *n if n is not NULL. */
static int wait_end(int fd, int timeout_ms, size_t *n)
{
	long long deadline = now_ms() + timeout_ms;
	static char buf[65536];

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t k;
		int r = poll(&p, 1, flows_ms_until(deadline));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k > 0 && n != NULL)
			*n += (size_t)k;
		if (k > 0 || (k < 0 && (errno == EAGAIN || errno == EINTR)))
			continue;
		if (k == 0)
			return 0;
		return errno == ECONNRESET ? ECONNRESET : -1;
	}
}

/* Connects n clients and logs them all in, their password checks overlapping. */
static void login_many(int port, int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fds[i] = harness_connect("127.0.0.1", port);
		assert_true(fds[i] >= 0);
		send_str(fds[i], credentials);
	}
	for (size_t i = 0; i < n; i++)
		expect_str(fds[i], "You are now logged in.\n");
}

/* The "session closed" line of the client whose local port is port. */
static void find_closed(struct ctx *c, int port, char *line, size_t len)
{
	char needle[48];
	size_t cursor = 0;

	snprintf(needle, sizeof(needle), " remote_port=%d ", port);
	while (logtap_wait(c->f.log, "session closed", &cursor, line, len, T) == 0)
		if (strstr(line, needle) != NULL)
			return;
	fail_msg("no \"session closed\" for the client from port %d", port);
}

/* ---- many sessions at once ----------------------------------------------- */

/* Every flow not reset by its client got its bytes back exactly, then EOF. */
static void flows_expect_echo(const struct flow *fl, size_t n)
{
	long i = flows_first_bad_echo(fl, n);
	const struct flow *f = i >= 0 ? &fl[i] : NULL;

	if (f != NULL)
		fail_msg("flow %ld: %s, error %d, %zu of %zu bytes back%s", i,
			 f->ended ? "ended" : "still open", f->error, f->got, f->out_len,
			 f->got == f->out_len ? ", but different" : "");
}

/* Echo flows of len bytes each (stream seed + i) on n logged-in fds, paused halfway if half.
 */
static void flows_init(struct ctx *c, struct flow *fl, const int *fds, size_t n, size_t len,
		       uint64_t seed, bool half)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char *out = test_alloc(c, len), *in = test_alloc(c, len);

		flows_pattern(seed + i, 0, out, len);
		flow_init(&fl[i], fds[i], out, len, in, len);
		if (half)
			fl[i].allow = len / 2;
	}
}

/* ---- 1. upstream faults -------------------------------------------------- */

/* Nothing listens at the first address (the refusal comes back later) and the second cannot
 * be reached at all (connect() fails at once): both are logged and the third one serves.
 * With nothing else to try the client is told. */
static void upstream_refused(void **state)
{
	static const char *const tag[] = {"--tag", "third", NULL};
	struct ctx *c = *state;
	char g[2 * PATH_MAX], up[96], line[1024], needle[64], buf[4096];
	int dead = free_port(), fd;
	ssize_t n;

	assert_int_equal(fixture_upstream(&c->f, tag), 0);
	/* A TCP connect() to the broadcast address fails with ENETUNREACH right away. */
	snprintf(up, sizeof(up), "\"127.0.0.1:%d\", \"255.255.255.255:9\", \"127.0.0.1:%d\"", dead,
		 c->f.upstream_port);
	write_gateways(c, gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, ""), NULL);
	start_daemon(c, NULL);

	fd = fixture_login(c->f.port, "alice", PASSWORD);
	assert_true(fd >= 0);
	send_str(fd, "who\n");
	expect_str(fd, "[third] I got your message: who\n");
	close(fd);
	assert_int_equal(fixture_log_wait(&c->f, "upstream connect failed", line, sizeof(line)), 0);
	snprintf(needle, sizeof(needle), " upstream=127.0.0.1:%d ", dead);
	assert_non_null(strstr(line, needle));
	assert_non_null(strstr(line, "Connection refused"));
	assert_int_equal(fixture_log_wait(&c->f, "upstream connect failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, " upstream=255.255.255.255:9 "));
	assert_non_null(strstr(line, "unreachable"));

	snprintf(up, sizeof(up), "\"127.0.0.1:%d\"", dead);
	write_gateways(c, gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, ""), NULL);
	reload(c);
	fd = harness_connect("127.0.0.1", c->f.port);
	assert_true(fd >= 0);
	send_str(fd, credentials);
	n = harness_read_all(fd, buf, sizeof(buf) - 1, T);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "Service unavailable.\n"));
	assert_null(strstr(buf, "logged in"));
	close(fd);
	assert_int_equal(fixture_log_wait(&c->f, "no upstream reachable", NULL, 0), 0);
	expect_settled(c, 2);
}

/* The length of lfd's accept queue, and in *max the most it may hold beyond which the
 * kernel drops SYNs (TCP_INFO of a listener). -1 on error. */
static int accept_queue(int lfd, unsigned *max)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	if (max != NULL)
		*max = ti.tcpi_sacked;
	return (int)ti.tcpi_unacked;
}

/* A connection to 127.0.0.1:port within the timeout (a blocking connect() to a dropped SYN
 * would wait for minutes). Returns a blocking socket or -1. */
static int connect_within(int port, int timeout_ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct pollfd p;
	int fd, err = 0;
	socklen_t el = sizeof(err);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		goto fail;
	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
	    err != 0)
		goto fail;
	if (fcntl(fd, F_SETFL, 0) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* A listener on 127.0.0.1 with a full accept queue (backlog 1, filled by the two fillers,
 * never accepted): the kernel drops every further SYN, so a connection to it neither
 * succeeds nor fails until the connecting side gives up. Returns the listener. */
static int blackhole(int *port, int fillers[2])
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	unsigned max = 0;
	int lfd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sl), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	for (int i = 0; i < 2; i++) {
		long long deadline;

		fillers[i] = connect_within(*port, T);
		assert_true(fillers[i] >= 0);
		/* The kernel queues it right after our connect() returns; no event says when
		 * (the listener is readable from the first one on): re-read every ms. */
		deadline = now_ms() + T;
		while (accept_queue(lfd, NULL) < i + 1 && now_ms() < deadline)
			poll(NULL, 0, 1);
		assert_int_equal(accept_queue(lfd, &max), i + 1);
	}
	assert_true(accept_queue(lfd, &max) > (int)max);
	return lfd;
}

/* The first address drops the SYN: after timeouts.connect the second one is tried. */
static void upstream_blackholed(void **state)
{
	static const char *const tag[] = {"--tag", "live", NULL};
	struct ctx *c = *state;
	char g[2 * PATH_MAX], up[64], line[1024], needle[64];
	int fillers[2], hole, lfd = blackhole(&hole, fillers), fd;
	long long t0, took;

	assert_int_equal(fixture_upstream(&c->f, tag), 0);
	snprintf(up, sizeof(up), "\"127.0.0.1:%d\", \"127.0.0.1:%d\"", hole, c->f.upstream_port);
	gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, "timeouts = { connect = 0.5; };");
	write_gateways(c, g, NULL);
	start_daemon(c, NULL);

	t0 = now_ms();
	fd = fixture_login(c->f.port, "alice", PASSWORD);
	took = now_ms() - t0;
	assert_true(fd >= 0);
	send_str(fd, "hi\n");
	expect_str(fd, "[live] I got your message: hi\n");
	assert_int_equal(fixture_log_wait(&c->f, "upstream connect failed", line, sizeof(line)), 0);
	snprintf(needle, sizeof(needle), " upstream=127.0.0.1:%d ", hole);
	assert_non_null(strstr(line, needle));
	assert_non_null(strstr(line, "connect timed out"));
	/* The login waited out the timeout (not a refusal), and the SYN never got in. */
	assert_true(took >= 450);
	assert_int_equal(accept_queue(lfd, NULL), 2);
	close(fd);
	close(fillers[0]);
	close(fillers[1]);
	close(lfd);
	expect_settled(c, 1);
}

/* The upstream of one session takes some bytes, then resets: that session ends with
 * "upstream reset"; eight others, mid-transfer through another gateway, finish exactly. */
static void upstream_resets_mid_stream(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	enum { GOOD = 8 };
	struct ctx *c = *state;
	size_t len = (size_t)harness_scale(2 * MiB, 256 * KiB), vlen = 64 * KiB;
	char g1[2 * PATH_MAX], g2[2 * PATH_MAX], up1[32], up2[32], line[1024];
	unsigned char probe[16 * KiB], *vout = test_alloc(c, vlen);
	int lport, lfd = harness_listen("127.0.0.1", &lport), fds[GOOD], victim, vport, ufd;
	struct flow fl[GOOD + 1];

	assert_true(lfd >= 0);
	assert_int_equal(fixture_upstream(&c->f, echo), 0);
	snprintf(up1, sizeof(up1), "\"127.0.0.1:%d\"", c->f.upstream_port);
	snprintf(up2, sizeof(up2), "\"127.0.0.1:%d\"", lport);
	write_gateways(c, gateway(c, g1, sizeof(g1), "echo", "127.0.0.1:0", up1, ""),
		       gateway(c, g2, sizeof(g2), "reset", "127.0.0.1:0", up2, ""));
	start_daemon(c, NULL);

	login_many(c->f.port, fds, GOOD);
	flows_init(c, fl, fds, GOOD, len, 100, true);
	assert_int_equal(flows_pump(fl, GOOD, NULL, T), 0);

	victim = fixture_login(gateway_port(c, "reset"), "alice", PASSWORD);
	assert_true(victim >= 0);
	vport = local_port(victim);
	flows_pattern(99, 0, vout, vlen);
	assert_int_equal(harness_write_all(victim, vout, vlen, T), 0);
	ufd = harness_accept(lfd, T);
	assert_true(ufd >= 0);
	assert_int_equal(harness_read_exact(ufd, probe, sizeof(probe), T), 0);
	assert_memory_equal(probe, vout, sizeof(probe));
	flows_reset_close(ufd);

	/* The victim sees its session end (and nothing else); the others carry on. */
	for (size_t i = 0; i < GOOD; i++)
		fl[i].allow = NEVER;
	flow_init(&fl[GOOD], victim, NULL, 0, NULL, 0);
	fl[GOOD].shut = true; /* the client never half-closes */
	assert_int_equal(flows_pump(fl, GOOD + 1, NULL, 2 * T), 0);
	assert_true(fl[GOOD].error == 0 || fl[GOOD].error == ECONNRESET);
	flows_expect_echo(fl, GOOD);
	find_closed(c, vport, line, sizeof(line));
	assert_non_null(strstr(line, "reason=\"upstream reset\""));
	expect_settled(c, GOOD + 1);
	close(lfd);
}

/* The upstream sends a banner and closes: the client gets the banner, then EOF, while its
 * own sending side is still open. */
static void upstream_closes_early(void **state)
{
	static const char banner[] = "220 upstream here, and gone\n";
	struct ctx *c = *state;
	char g[2 * PATH_MAX], up[32], buf[4096], line[1024], bytes[32];
	int lport, lfd = harness_listen("127.0.0.1", &lport), fd, ufd, port;
	ssize_t n;

	assert_true(lfd >= 0);
	snprintf(up, sizeof(up), "\"127.0.0.1:%d\"", lport);
	write_gateways(c, gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, ""), NULL);
	start_daemon(c, NULL);

	fd = fixture_login(c->f.port, "alice", PASSWORD);
	assert_true(fd >= 0);
	port = local_port(fd);
	ufd = harness_accept(lfd, T);
	assert_true(ufd >= 0);
	assert_int_equal(harness_write_all(ufd, banner, sizeof(banner) - 1, T), 0);
	close(ufd);
	close(lfd);
	n = harness_read_all(fd, buf, sizeof(buf), T);
	assert_int_equal(n, sizeof(banner) - 1);
	assert_memory_equal(buf, banner, sizeof(banner) - 1);
	close(fd);
	find_closed(c, port, line, sizeof(line));
	snprintf(bytes, sizeof(bytes), " bytes_out=%zu ", sizeof(banner) - 1);
	assert_non_null(strstr(line, bytes));
	assert_non_null(strstr(line, " reason=closed "));
	expect_settled(c, 1);
}

/* ---- 2. client faults ---------------------------------------------------- */

/* The system calls an event loop blocks in, as /proc/PID/task/TID/syscall
 * numbers them (a libc may implement epoll_wait() with epoll_pwait()). */
static bool is_epoll_wait(long nr)
{
#ifdef SYS_epoll_wait
	if (nr == SYS_epoll_wait)
		return true;
#endif
#ifdef SYS_epoll_pwait2
	if (nr == SYS_epoll_pwait2)
		return true;
#endif
	return nr == SYS_epoll_pwait;
}

/* Of pid's threads, how many are not yet stopped, and how many event loops
 * (sockgate-w*) are stopped anywhere but in epoll_wait(), i.e. amid a batch. */
static void thread_states(pid_t pid, unsigned *running, unsigned *busy_loops)
{
	char path[64];
	struct dirent *de;
	DIR *d;

	*running = *busy_loops = 0;
	snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char file[512], text[512], *paren;
		FILE *f;
		bool stopped;

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/stat", path, de->d_name);
		if ((f = fopen(file, "r")) == NULL)
			continue; /* a thread that just ended */
		stopped = fgets(text, sizeof(text), f) != NULL &&
			  (paren = strrchr(text, ')')) != NULL && paren[1] == ' ' &&
			  paren[2] == 'T';
		fclose(f);
		if (!stopped) {
			(*running)++;
			continue;
		}
		if (strstr(text, "(sockgate-w") == NULL)
			continue;
		snprintf(file, sizeof(file), "%s/%s/syscall", path, de->d_name);
		f = fopen(file, "r");
		/* Unreadable (ptrace restrictions) would silently bring the race back. */
		if (f == NULL)
			fail_msg("cannot read %s: %s", file, strerror(errno));
		if (fgets(text, sizeof(text), f) == NULL || !is_epoll_wait(atol(text)))
			(*busy_loops)++;
		fclose(f);
	}
	closedir(d);
}

/* Stops the daemon at a moment when every event loop waits for events (none
 * is amid a batch that could still read a socket), bounded. */
static void freeze(struct ctx *c)
{
	long long until = now_ms() + T;
	pid_t pid = c->f.daemon.pid;

	for (;;) {
		unsigned running, busy;

		assert_int_equal(kill(pid, SIGSTOP), 0);
		for (;;) {
			assert_true(now_ms() < until);
			thread_states(pid, &running, &busy);
			if (running == 0)
				break;
			poll(NULL, 0, 1);
		}
		if (busy == 0)
			return;
		assert_int_equal(kill(pid, SIGCONT), 0);
		poll(NULL, 0, 1);
	}
}

/* True while /proc/net/tcp lists the connection between the client's port and
 * the gateway's (the kernel unlists a socket once a reset has closed it);
 * TIME_WAIT entries of earlier connections do not count. */
static bool tcp_connection_listed(int client_port, int gateway_port)
{
	char line[256];
	bool listed = false;
	FILE *f = fopen("/proc/net/tcp", "r");

	assert_non_null(f);
	while (!listed && fgets(line, sizeof(line), f) != NULL) {
		unsigned local, remote, state;

		if (sscanf(line, " %*d: %*8[0-9A-F]:%4X %*8[0-9A-F]:%4X %2X", &local, &remote,
			   &state) == 3 &&
		    state != 6 /* TIME_WAIT */)
			listed = (local == (unsigned)client_port &&
				  remote == (unsigned)gateway_port) ||
				 (local == (unsigned)gateway_port &&
				  remote == (unsigned)client_port);
	}
	fclose(f);
	return listed;
}

/* Waits (bounded) until the kernel has closed both ends of the connection. */
static void wait_unlisted(struct ctx *c, int client_port)
{
	long long until = now_ms() + T;

	while (tcp_connection_listed(client_port, c->f.port)) {
		assert_true(now_ms() < until);
		poll(NULL, 0, 1);
	}
}

/* A connection that sent its user name and was asked for the password. */
static int at_password_prompt(struct ctx *c, int *port)
{
	int fd = harness_connect("127.0.0.1", c->f.port);

	assert_true(fd >= 0);
	*port = local_port(fd);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	expect_str(fd, "Password: ");
	return fd;
}

/* Clients reset after the username, right after the password and in the middle of a
 * 10 MiB transfer; four sessions relaying meanwhile never notice. */
static void client_resets(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	enum { GOOD = 4 };
	struct ctx *c = *state;
	size_t len = (size_t)harness_scale(4 * MiB, 512 * KiB);
	size_t big = (size_t)harness_scale(10 * MiB, 2 * MiB);
	uint64_t rng = SEED;
	char line[1024];
	int fds[GOOD], fd, port;
	struct flow fl[GOOD], v[1];

	assert_int_equal(fixture_upstream(&c->f, echo), 0);
	write_simple(c, "");
	start_daemon(c, NULL);
	login_many(c->f.port, fds, GOOD);
	flows_init(c, fl, fds, GOOD, len, 200, true);
	assert_int_equal(flows_pump(fl, GOOD, NULL, T), 0);

	/* Before the prompt can have been read: whether the prompt's write or
	 * the event reports the reset, it is named as one. */
	fd = harness_connect("127.0.0.1", c->f.port);
	assert_true(fd >= 0);
	port = local_port(fd);
	flows_reset_close(fd);
	find_closed(c, port, line, sizeof(line));
	assert_non_null(strstr(line, "reason=\"client reset during login\""));

	/* After the username. */
	fd = at_password_prompt(c, &port);
	flows_reset_close(fd);
	find_closed(c, port, line, sizeof(line));
	assert_non_null(strstr(line, " state=password "));
	assert_non_null(strstr(line, "reason=\"client reset during login\""));

	/* Right after the password: its check is queued or running. */
	fd = harness_connect("127.0.0.1", c->f.port);
	assert_true(fd >= 0);
	port = local_port(fd);
	expect_str(fd, "Username: ");
	send_str(fd, credentials);
	flows_reset_close(fd);
	find_closed(c, port, line, sizeof(line));
	assert_non_null(strstr(line, "reason=\"client reset during login\""));

	/* The password line and a reset together: the line must start no check
	 * for a client that cannot hear the answer, so the session ends still in
	 * the password state (checking first would move it on to verifying).
	 * The daemon is stopped until the kernel has taken both (its socket is
	 * unlisted once the reset is in), so that its worker sees them at once. */
	fd = at_password_prompt(c, &port);
	freeze(c);
	send_str(fd, PASSWORD "\n");
	flows_reset_close(fd);
	wait_unlisted(c, port);
	assert_int_equal(kill(c->f.daemon.pid, SIGCONT), 0);
	find_closed(c, port, line, sizeof(line));
	assert_non_null(strstr(line, " state=password "));
	assert_non_null(strstr(line, "reason=\"client reset during login\""));

	/* Somewhere in the middle of a 10 MiB transfer. */
	fd = fixture_login(c->f.port, "alice", PASSWORD);
	assert_true(fd >= 0);
	port = local_port(fd);
	flows_init(c, v, &fd, 1, big, 300, false);
	v->reset_at = big / 2 + flows_rng_next(&rng) % big;
	assert_int_equal(flows_pump(v, 1, NULL, T), 0);
	assert_true(v->reset);
	find_closed(c, port, line, sizeof(line));
	assert_non_null(strstr(line, " state=relaying "));
	assert_non_null(strstr(line, "reason=\"client reset\""));

	for (size_t i = 0; i < GOOD; i++)
		fl[i].allow = NEVER;
	assert_int_equal(flows_pump(fl, GOOD, NULL, T), 0);
	flows_expect_echo(fl, GOOD);
	expect_settled(c, GOOD + 5);
}

/* ---- 3. a thousand sessions, a fifth of them reset ----------------------- */

static void random_resets(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	struct ctx *c = *state;
	const size_t total = (size_t)harness_scale(1000, 200), wave = 100;
	const size_t len = (size_t)harness_scale(64 * KiB, 16 * KiB);
	size_t resets = 0, completed = 0, cursor = 0;
	uint64_t rng = SEED;
	unsigned char *out = test_alloc(c, wave * len), *in = test_alloc(c, wave * len);
	struct flow *fl = test_alloc(c, wave * sizeof(*fl));
	int *fds = test_alloc(c, wave * sizeof(*fds));
	long long t0 = now_ms();

	assert_int_equal(fixture_upstream(&c->f, echo), 0);
	write_simple(c, "");
	start_daemon(c, NULL);
	for (size_t base = 0; base < total; base += wave) {
		size_t n = total - base < wave ? total - base : wave;

		login_many(c->f.port, fds, n);
		for (size_t i = 0; i < n; i++) {
			flows_pattern(SEED + base + i, 0, out + i * len, len);
			flow_init(&fl[i], fds[i], out + i * len, len, in + i * len, len);
			/* Anywhere: before the first byte, while sending, while receiving. */
			if (flows_rng_next(&rng) % 5 == 0)
				fl[i].reset_at = flows_rng_next(&rng) % (2 * len);
		}
		assert_int_equal(flows_pump(fl, n, NULL, (int)harness_scale(60000, 300000)), 0);
		for (size_t i = 0; i < n; i++) {
			if (fl[i].reset) {
				resets++;
				continue;
			}
			if (fl[i].error != 0 || fl[i].got != len ||
			    memcmp(fl[i].in, fl[i].out, len) != 0)
				fail_msg("session %zu: error %d, %zu of %zu bytes back", base + i,
					 fl[i].error, fl[i].got, len);
			completed++;
		}
		/* One wave at a time: bounded concurrency, well within descriptor limits. */
		for (size_t i = 0; i < n; i++)
			if (logtap_wait(c->f.log, "session closed", &cursor, NULL, 0, T) < 0)
				fail_msg("wave at %zu: a session never closed", base);
	}
	print_message("%zu sessions in %lld ms: %zu byte-exact, %zu reset by their client\n", total,
		      now_ms() - t0, completed, resets);
	assert_true(resets >= total / 10 && resets <= total * 3 / 10);
	/* A client's reset never shows as the upstream's fault. */
	assert_false(logtap_contains(c->f.log, "reason=\"upstream"));
	expect_settled(c, (unsigned)total);
}

/* ---- 4. SIGHUP storm ----------------------------------------------------- */

#define STORM_SIGNALS 100
#define VARIANT_A     "login = { success_message = \"Variant A.\\nYou are now logged in.\\n\"; };"
#define VARIANT_B     "login = { success_message = \"Variant B.\\nYou are now logged in.\\n\"; };"

struct storm {
	struct ctx *c;
	struct flow *fl;
	size_t n;
	long long last_us; /* when the last SIGHUP went */
	int errors;
};

/* The storm's configurations: valid, differing in the success message, and with
 * revoke_on_reload, so each reload also checks every relayed session's user against the
 * (unchanged) credentials: none may be ended. */
static int write_storm_config(struct ctx *c, const char *variant)
{
	char g[2 * PATH_MAX], up[32], text[3 * PATH_MAX];

	snprintf(up, sizeof(up), "\"127.0.0.1:%d\"", c->f.upstream_port);
	gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, variant);
	snprintf(text, sizeof(text), "%srevoke_on_reload = true;\ngateways = (\n  %s\n);\n",
		 ONE_HOST_LOAD, g);
	return fixture_write_config(&c->f, text);
}

/* Every 10 ms: a new configuration, SIGHUP, and a little more data allowed through, so the
 * transfers span the storm. */
static void storm_tick(void *arg, int i)
{
	struct storm *st = arg;

	if (write_storm_config(st->c, i % 2 == 0 ? VARIANT_A : VARIANT_B) < 0)
		st->errors++;
	st->last_us = now_us();
	if (kill(st->c->f.daemon.pid, SIGHUP) < 0)
		st->errors++;
	for (size_t k = 0; k < st->n; k++)
		st->fl[k].allow = st->fl[k].out_len * (size_t)(i + 1) / STORM_SIGNALS;
}

static void sighup_storm(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	enum { N = 50 };
	struct ctx *c = *state;
	size_t len = (size_t)harness_scale(1 * MiB, 128 * KiB);
	struct storm st = {.c = c, .n = N};
	struct pacer pc = {.period_ms = 10, .count = STORM_SIGNALS, .fn = storm_tick, .arg = &st};
	struct flow fl[N];
	int fds[N], fd;
	long long t0;

	assert_int_equal(fixture_upstream(&c->f, echo), 0);
	assert_int_equal(write_storm_config(c, VARIANT_B), 0);
	start_daemon(c, NULL);
	login_many(c->f.port, fds, N);
	flows_init(c, fl, fds, N, len, 400, false);
	st.fl = fl;
	for (size_t i = 0; i < N; i++)
		st.fl[i].allow = 0;
	t0 = now_ms();
	assert_int_equal(flows_pump(st.fl, N, &pc, 4 * T), 0);
	assert_int_equal(st.errors, 0);
	flows_expect_echo(st.fl, N);
	wait_reloaded_since(c, st.last_us);
	print_message("%d SIGHUPs in %lld ms under load: %u reloads\n", STORM_SIGNALS,
		      now_ms() - t0, logtap_count(c->f.log, "configuration reloaded"));
	assert_true(logtap_count(c->f.log, "configuration reloaded") >= 1);
	assert_false(logtap_contains(c->f.log, "reload failed"));
	assert_false(logtap_contains(c->f.log, "access revoked"));
	/* The last configuration written (B) is the one in force. */
	fd = harness_connect("127.0.0.1", c->f.port);
	assert_true(fd >= 0);
	send_str(fd, credentials);
	expect_str(fd, "Variant B.\nYou are now logged in.\n");
	send_str(fd, "still echoing\n");
	expect_str(fd, "still echoing\n");
	close(fd);
	expect_settled(c, N + 1);
}

/* ---- 5. SIGKILL and restart ---------------------------------------------- */

static void sigkill_and_restart(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	struct ctx *c = *state;
	char g[2 * PATH_MAX], listen[32], up[32];
	int port = free_port(), fds[3], fd;
	struct flow busy[1];
	long long deadline;

	assert_int_equal(fixture_upstream(&c->f, echo), 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(up, sizeof(up), "\"127.0.0.1:%d\"", c->f.upstream_port);
	write_gateways(c, gateway(c, g, sizeof(g), "t", listen, up, ""), NULL);
	start_daemon(c, NULL);
	assert_int_equal(c->f.port, port);

	/* Live: one idle, one half-way through its login, one half-way through 4 MiB. */
	fds[0] = fixture_login(port, "alice", PASSWORD);
	assert_true(fds[0] >= 0);
	fds[1] = harness_connect("127.0.0.1", port);
	assert_true(fds[1] >= 0);
	expect_str(fds[1], "Username: ");
	send_str(fds[1], "alice\n");
	expect_str(fds[1], "Password: ");
	fds[2] = fixture_login(port, "alice", PASSWORD);
	assert_true(fds[2] >= 0);
	flows_init(c, busy, &fds[2], 1, (size_t)harness_scale(4 * MiB, 512 * KiB), 500, true);
	assert_int_equal(flows_pump(busy, 1, NULL, T), 0);

	assert_int_equal(kill(c->f.daemon.pid, SIGKILL), 0);
	assert_int_equal(harness_wait_exit(&c->f.daemon, T), 0);
	assert_int_equal(c->f.daemon.term_signal, SIGKILL);
	/* The kernel closed its sockets as it died: every client learns at once. */
	for (int i = 0; i < 3; i++) {
		int r = wait_end(fds[i], 2000, NULL);

		if (r != 0 && r != ECONNRESET)
			fail_msg("client %d: no EOF or reset within 2 s of the daemon's death", i);
		close(fds[i]);
	}
	/* The closed connections leave TIME_WAIT on the port (the kernel tells no event for
	 * it: /proc is re-read every 5 ms); the new daemon must bind despite them. */
	deadline = now_ms() + T;
	while (!time_wait_on(port) && now_ms() < deadline)
		poll(NULL, 0, 5);
	assert_true(time_wait_on(port));
	restart_daemon(c);
	assert_int_equal(c->f.port, port);
	fd = fixture_login(port, "alice", PASSWORD);
	assert_true(fd >= 0);
	send_str(fd, "after the restart\n");
	expect_str(fd, "after the restart\n");
	close(fd);
	expect_settled(c, 1);
}

/* ---- 6. descriptor exhaustion -------------------------------------------- */

static void descriptor_exhaustion(void **state)
{
	static const char *const limit[] = {"/usr/bin/prlimit", "--nofile=64:64", "--", NULL};
	static const char *const echo[] = {"--echo", NULL};
	enum { MAX_CLIENTS = 200 };
	struct ctx *c = *state;
	char line[1024];
	int fds[MAX_CLIENTS], fd;
	size_t n = 0;
	long long cpu0, cpu1, t0, t1;

	if (access(limit[0], X_OK) != 0) {
		c->settled = true;
		test_skip("no %s", limit[0]);
	}
	assert_int_equal(fixture_upstream(&c->f, echo), 0);
	write_simple(c, "");
	start_daemon(c, limit);
	/* More clients than it has descriptors: the rest wait in the listen queue. */
	while (n < MAX_CLIENTS && !logtap_contains(c->f.log, "accept paused")) {
		fds[n] = harness_connect("127.0.0.1", c->f.port);
		assert_true(fds[n] >= 0);
		n++;
	}
	assert_int_equal(fixture_log_wait(&c->f, "accept paused", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"process descriptor limit\""));

	/* Paused, not spinning: its CPU time over one second (a measurement, not a wait). */
	cpu0 = harness_proc_cpu_ms(c->f.daemon.pid);
	t0 = now_ms();
	poll(NULL, 0, 1000);
	cpu1 = harness_proc_cpu_ms(c->f.daemon.pid);
	t1 = now_ms();
	assert_true(cpu0 >= 0 && cpu1 >= 0);
	print_message("%zu clients; paused daemon used %lld ms of CPU in %lld ms\n", n, cpu1 - cpu0,
		      t1 - t0);
	assert_true((cpu1 - cpu0) * 5 < t1 - t0);

	/* Descriptors back: accepting resumes, the queued clients are served (and go), and a
	 * new one logs in. */
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	fd = fixture_login(c->f.port, "alice", PASSWORD);
	assert_true(fd >= 0);
	send_str(fd, "resumed\n");
	expect_str(fd, "resumed\n");
	close(fd);
	expect_settled(c, (unsigned)n + 1);
}

/* ---- 7. memory stays flat ------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* How much the daemon's RSS may grow while relaying: one 256 KiB scratch buffer per worker
 * and at most one 256 KiB remainder per direction, with room to spare. ASan's allocator
 * caches freed blocks per size class (a remainder can have any size) and shadows them: it
 * grows to about 5 MiB here. Without backpressure the growth would be hundreds of MiB. */
#ifdef UNDER_ASAN
#define RSS_GROWTH_MAX_KIB (16 * 1024)
#else
#define RSS_GROWTH_MAX_KIB (4 * 1024)
#endif

/* Under ASan each freed block first waits in a quarantine of up to 256 MiB, which RSS would
 * measure instead of the daemon: this daemon runs without one (the others keep it). */
static void start_without_quarantine(struct ctx *c)
{
#ifdef UNDER_ASAN
	const char *old = getenv("ASAN_OPTIONS");
	char *saved = old != NULL ? strdup(old) : NULL, opts[1024];

	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=0", old != NULL ? old : "",
		 old != NULL && old[0] != '\0' ? ":" : "");
	assert_int_equal(setenv("ASAN_OPTIONS", opts, 1), 0);
	start_daemon(c, NULL);
	if (saved != NULL)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(saved);
#else
	start_daemon(c, NULL);
#endif
}

/* A client pushes as fast as it can into an upstream that reads at a fixed, lower rate: the
 * daemon must stop reading (backpressure), not buffer. A session holds at most one chunk per
 * direction (the worker's 256 KiB scratch), so RSS may grow by little more than that. */
static void memory_flat(void **state)
{
	static unsigned char obuf[256 * KiB], ibuf[64 * KiB], want[64 * KiB];
	struct ctx *c = *state;
	const uint64_t total = (uint64_t)harness_scale(2048 * (long)MiB, 256 * (long)MiB);
	const uint64_t rate = 40 * MiB; /* bytes per second: 2 GiB in ~51 s */
	const size_t chunk = sizeof(obuf), quantum = sizeof(ibuf);
	char g[2 * PATH_MAX], up[32];
	uint64_t sent = 0, recvd = 0;
	size_t ooff = 0, olen = 0;
	int lport, lfd = harness_listen("127.0.0.1", &lport), cfd, ufd;
	long rss0, rss, rss_max;
	long long start, deadline, next_sample;
	size_t rest = 0;
	pid_t pid;

	assert_true(lfd >= 0);
	snprintf(up, sizeof(up), "\"127.0.0.1:%d\"", lport);
	write_gateways(c, gateway(c, g, sizeof(g), "t", "127.0.0.1:0", up, ""), NULL);
	start_without_quarantine(c);
	pid = c->f.daemon.pid;
	cfd = fixture_login(c->f.port, "alice", PASSWORD);
	assert_true(cfd >= 0);
	ufd = harness_accept(lfd, T);
	assert_true(ufd >= 0);
	close(lfd);
	rss0 = rss_max = proc_rss_kib(pid);
	assert_true(rss0 > 0);

	start = now_ms();
	next_sample = start;
	deadline = start + (long long)(total * 1000 / rate) * 3 + T;
	while (recvd < total) {
		long long now = now_ms();
		/* What the upstream may have read by now. */
		uint64_t budget = rate * (uint64_t)(now - start) / 1000;
		uint64_t may = budget > recvd ? budget - recvd : 0;
		uint64_t need = total - recvd < quantum ? total - recvd : quantum;
		struct pollfd p[2] = {{cfd, 0, 0}, {ufd, 0, 0}};
		int wait;

		if (now >= next_sample) {
			rss = proc_rss_kib(pid);
			if (rss > rss_max)
				rss_max = rss;
			/* Stop before a daemon that buffers everything eats the machine. */
			if (rss_max - rss0 >= RSS_GROWTH_MAX_KIB && harness_wrapper() == NULL)
				fail_msg("daemon RSS grew from %ld to %ld KiB after %llu bytes",
					 rss0, rss_max, (unsigned long long)recvd);
			next_sample = now + 50;
		}
		if (now >= deadline)
			fail_msg("%llu of %llu bytes after %lld ms", (unsigned long long)recvd,
				 (unsigned long long)total, now - start);
		if (sent < total)
			p[0].events = POLLOUT;
		if (may >= need)
			p[1].events = POLLIN;
		/* Pacing the reader: the time until it may read a quantum again. */
		wait = may >= need ? (int)(next_sample - now)
				   : (int)((need - may) * 1000 / rate) + 1;
		if (wait > (int)(next_sample - now))
			wait = (int)(next_sample - now);
		if (poll(p, 2, wait < 0 ? 0 : wait) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		if (p[0].revents & POLLOUT) {
			ssize_t k;

			if (olen == 0) {
				olen = total - sent < chunk ? (size_t)(total - sent) : chunk;
				ooff = 0;
				flows_pattern(SEED, sent, obuf, olen);
			}
			k = send(cfd, obuf + ooff, olen, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k < 0 && errno != EAGAIN && errno != EINTR)
				fail_msg("client send: %s", strerror(errno));
			if (k > 0) {
				sent += (uint64_t)k;
				ooff += (size_t)k;
				olen -= (size_t)k;
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t k = recv(ufd, ibuf, may < quantum ? (size_t)may : quantum,
					 MSG_DONTWAIT);

			if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
				fail_msg("upstream: %s after %llu bytes",
					 k == 0 ? "EOF" : strerror(errno),
					 (unsigned long long)recvd);
			if (k > 0) {
				flows_pattern(SEED, recvd, want, (size_t)k);
				if (memcmp(ibuf, want, (size_t)k) != 0)
					fail_msg("the bytes at %llu differ",
						 (unsigned long long)recvd);
				recvd += (uint64_t)k;
			}
		}
	}
	print_message("%llu MiB in %lld ms; daemon RSS %ld KiB after login, at most %ld KiB "
		      "(+%ld KiB)\n",
		      (unsigned long long)(total / MiB), now_ms() - start, rss0, rss_max,
		      rss_max - rss0);
	/* The ends: the client's EOF reaches the upstream, the upstream's the client. */
	assert_int_equal(shutdown(cfd, SHUT_WR), 0);
	assert_int_equal(wait_end(ufd, T, &rest), 0);
	assert_int_equal(rest, 0);
	close(ufd);
	assert_int_equal(wait_end(cfd, T, &rest), 0);
	assert_int_equal(rest, 0);
	close(cfd);
	if (harness_wrapper() == NULL)
		assert_true(rss_max - rss0 < RSS_GROWTH_MAX_KIB);
	else
		print_message("not checking RSS under %s\n", harness_wrapper()[0]);
	expect_settled(c, 1);
}

/* An argument picks tests by name (cmocka's pattern: '*' and '?'), e.g. "upstream_*". */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(upstream_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(upstream_blackholed, setup, teardown),
		cmocka_unit_test_setup_teardown(upstream_resets_mid_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(upstream_closes_early, setup, teardown),
		cmocka_unit_test_setup_teardown(client_resets, setup, teardown),
		cmocka_unit_test_setup_teardown(random_resets, setup, teardown),
		cmocka_unit_test_setup_teardown(sighup_storm, setup, teardown),
		cmocka_unit_test_setup_teardown(sigkill_and_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(descriptor_exhaustion, setup, teardown),
		cmocka_unit_test_setup_teardown(memory_flat, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return test_exit(cmocka_run_group_tests_name("faults", tests, NULL, NULL));
}
