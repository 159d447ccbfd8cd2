/* test_proxy_protocol: the PROXY protocol in and out, against a real HAProxy
 * (Debian's). In: behind HAProxy with send-proxy and send-proxy-v2, a client
 * bound to its own 127.0.0.x address logs in and that address is the one
 * sockgate logs; penalties follow it, not the balancer's; a source not in
 * proxy_protocol.from, a malformed header, a slow header and a v2 LOCAL
 * health check all end without a prompt. Out: HAProxy with accept-proxy as
 * the upstream logs the client address sockgate gave it; a v2 header read by
 * the project's own parser carries the session id, the user and the gateway,
 * signed with the gateway's key, and proxy_verify() accepts it. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"
#include "proxy.h"

#define PASSWORD "Proxy-Pass-7"
#define HAPROXY  "/usr/sbin/haproxy"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, NULL};

struct catcher;

struct pp {
	struct fixture f;
	struct harness_proc haproxy;
	int front;               /* HAProxy's port for clients */
	struct catcher *catcher; /* a header-reading upstream, or NULL */
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* HAProxy with cfg (its text), started in the foreground; waits until port
 * accepts connections. */
static void haproxy_start(struct pp *p, const char *cfg, int port)
{
	char path[PATH_MAX + 32];
	const char *argv[] = {HAPROXY, "-db", "-f", path, NULL};
	long long deadline = harness_now_ms() + T;
	int fd;

	snprintf(path, sizeof(path), "%s/haproxy.cfg", p->f.dir);
	write_file(path, cfg);
	assert_int_equal(harness_spawn(&p->haproxy, argv, NULL, HARNESS_STDIN_NULL), 0);
	/* Readiness: the port answers (bounded; HAProxy has no notify here). */
	while ((fd = harness_connect("127.0.0.1", port)) < 0) {
		assert_true(harness_now_ms() < deadline);
		assert_int_equal(harness_wait_exit(&p->haproxy, 20), -1);
	}
	close(fd);
}

/* sockgate behind HAProxy: from = 127.0.0.1 (HAProxy's side); send is
 * "send-proxy" or "send-proxy-v2". */
static int start_behind(void **state, const char *send, const char *top)
{
	struct pp *p = calloc(1, sizeof(*p));
	char cfg[2048];

	if (access(HAPROXY, X_OK) != 0)
		test_skip("no %s (Debian package haproxy)", HAPROXY);
	assert_non_null(p);
	*state = p;
	assert_int_equal(fixture_setup(&p->f, users, NULL, top,
				       "proxy_protocol = { accept = \"any\"; from = \"127.0.0.1\"; "
				       "timeout = 0.5; };\nlogin = { failure_delay = 0; };"),
			 0);
	p->front = free_port();
	snprintf(cfg, sizeof(cfg),
		 "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n"
		 "  timeout client 30s\n  timeout server 30s\n"
		 "listen front\n  bind 127.0.0.1:%d\n  server gw 127.0.0.1:%d %s\n",
		 p->front, p->f.port, send);
	haproxy_start(p, cfg, p->front);
	/* HAProxy's readiness probe reached sockgate without a header. */
	return 0;
}

static int setup_v1(void **state)
{
	return start_behind(state, "send-proxy", NULL);
}

static int setup_v2(void **state)
{
	return start_behind(state, "send-proxy-v2", NULL);
}

static int setup_penalties(void **state)
{
	return start_behind(state, "send-proxy-v2",
			    "penalties = { authfail = 20; min = 15; noauth = 0; };");
}

static int teardown(void **state)
{
	struct pp *p = *state;

	harness_cleanup(&p->haproxy);
	*state = &p->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* Logs in through HAProxy from src; returns the socket after the login. */
static int login_via(struct pp *p, const char *src, const char *password, bool expect_ok)
{
	char buf[4096], text[256];
	int fd = harness_connect_from(src, "127.0.0.1", p->front);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	snprintf(text, sizeof(text), "alice\n%s\n", password);
	send_str(fd, text);
	if (expect_ok) {
		expect_str(fd, "You are now logged in.\n");
		return fd;
	}
	assert_true(fixture_expect(fd, "Username: ", buf, sizeof(buf), T) > 0);
	close(fd);
	return -1;
}

static void the_header_address_is_the_client(struct pp *p)
{
	char line[1024];
	int fd = login_via(p, "127.0.0.77", PASSWORD, true);

	send_str(fd, "behind haproxy\n");
	expect_str(fd, "I got your message: behind haproxy\n");
	close(fd);
	assert_int_equal(fixture_log_wait(&p->f, "login ok", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "remote_addr=127.0.0.77 "));
}

static void send_proxy_v1_gives_the_client_address(void **state)
{
	the_header_address_is_the_client(*state);
}

static void send_proxy_v2_gives_the_client_address(void **state)
{
	the_header_address_is_the_client(*state);
}

/* Failures from 127.0.0.88 penalise 127.0.0.88, not HAProxy: 127.0.0.89
 * behind the same balancer still gets in. */
static void penalties_follow_the_header_address(void **state)
{
	struct pp *p = *state;
	char buf[4096], line[1024];
	int fd;

	(void)login_via(p, "127.0.0.88", "wrong", false);
	assert_int_equal(fixture_log_wait(&p->f, "source penalised", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "source=127.0.0.88/32"));
	fd = harness_connect_from("127.0.0.88", "127.0.0.1", p->front);
	assert_true(fd >= 0);
	assert_true(fixture_expect(fd, "try again later.\n", buf, sizeof(buf), T) > 0);
	close(fd);
	fd = login_via(p, "127.0.0.89", PASSWORD, true);
	close(fd);
}

/* Without HAProxy: straight to sockgate. */
static ssize_t direct(struct pp *p, const char *src, const void *send, size_t len, char *buf,
		      size_t cap)
{
	int fd = harness_connect_from(src, "127.0.0.1", p->f.port);
	ssize_t n;

	assert_true(fd >= 0);
	if (len > 0)
		assert_int_equal(write(fd, send, len), (ssize_t)len);
	/* The end may be a reset: the bytes sent were never read. */
	n = harness_read_all(fd, buf, cap - 1, T);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? n : 0;
}

static void anything_else_ends_without_a_prompt(void **state)
{
	struct pp *p = *state;
	static const uint8_t local[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
					  0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
	char buf[1024], line[1024];

	/* A source that is no balancer. */
	assert_int_equal(direct(p, "127.0.0.9", "alice\n", 6, buf, sizeof(buf)), 0);
	assert_int_equal(
		fixture_log_wait(&p->f, "not a proxy_protocol.from source", line, sizeof(line)), 0);
	/* A balancer's garbage. */
	assert_int_equal(direct(p, "127.0.0.1", "GET / HTTP/1.0\r\n\r\n", 18, buf, sizeof(buf)), 0);
	assert_int_equal(fixture_log_wait(&p->f, "bad PROXY header", line, sizeof(line)), 0);
	/* Half a header, then silence: the timeout (0.5 s) ends it. */
	assert_int_equal(direct(p, "127.0.0.1", "PROXY TCP4 127.0.0.5", 20, buf, sizeof(buf)), 0);
	assert_int_equal(fixture_log_wait(&p->f, "no PROXY header in time", line, sizeof(line)), 0);
	/* A health check: v2 LOCAL, a clean close. */
	assert_int_equal(direct(p, "127.0.0.1", local, sizeof(local), buf, sizeof(buf)), 0);
	assert_int_equal(fixture_log_wait(&p->f, "PROXY health check", line, sizeof(line)), 0);
	assert_null(strstr(buf, "Username"));
}

/* ---- out ---------------------------------------------------------------- */

/* sockgate's upstream is HAProxy with accept-proxy, which relays to the
 * echo server and logs the client address it was given. */
static int setup_out_haproxy(void **state)
{
	struct pp *p = calloc(1, sizeof(*p));
	static const char *const echo[] = {"--echo", NULL};
	char cfg[2048], gw[512];
	int back;

	if (access(HAPROXY, X_OK) != 0)
		test_skip("no %s (Debian package haproxy)", HAPROXY);
	assert_non_null(p);
	*state = p;
	assert_int_equal(fixture_init(&p->f, users), 0);
	assert_int_equal(fixture_upstream(&p->f, echo), 0);
	back = free_port();
	snprintf(cfg, sizeof(cfg),
		 "global\n  maxconn 100\n  log stdout format raw local0 info\n"
		 "defaults\n  mode tcp\n  log global\n  timeout connect 5s\n"
		 "  timeout client 30s\n  timeout server 30s\n"
		 "listen back\n  bind 127.0.0.1:%d accept-proxy\n"
		 "  log-format \"haproxy-client=%%ci:%%cp\"\n"
		 "  server echo 127.0.0.1:%d\n",
		 back, p->f.upstream_port);
	haproxy_start(p, cfg, back);
	snprintf(gw, sizeof(gw), "upstream_proxy_protocol = \"v2\";\n");
	{
		char text[3 * PATH_MAX];

		snprintf(text, sizeof(text),
			 "gateways = ( { name = \"test\"; listen = \"127.0.0.1:0\";\n"
			 "  upstream = \"127.0.0.1:%d\"; credentials = \"%s\";\n  %s } );\n",
			 back, p->f.users, gw);
		assert_int_equal(fixture_write_config(&p->f, text), 0);
	}
	assert_int_equal(fixture_start(&p->f), 0);
	return 0;
}

static void haproxy_accept_proxy_sees_the_client(void **state)
{
	struct pp *p = *state;
	char buf[8192];
	int fd = harness_connect_from("127.0.0.55", "127.0.0.1", p->f.port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\nthrough two proxies\n");
	assert_true(fixture_expect(fd, "through two proxies\n", buf, sizeof(buf), T) > 0);
	close(fd);
	/* HAProxy logs the session when it ends. */
	assert_true(fixture_expect(p->haproxy.out_fd, "haproxy-client=127.0.0.55:", buf,
				   sizeof(buf), T) > 0);
}

/* A test upstream that reads one PROXY v2 header with the project's parser
 * and keeps what it found. */
struct catcher {
	int listen_fd, port;
	pthread_t thread;
	uint8_t buf[PROXY_V2_MAX];
	size_t len;
	struct proxy_header h;
	enum proxy_result r;
};

static void *catcher_run(void *arg)
{
	struct catcher *c = arg;
	int fd = accept(c->listen_fd, NULL, NULL);
	long long deadline = harness_now_ms() + T;

	c->r = PROXY_NEED_MORE;
	while (fd >= 0 && c->r == PROXY_NEED_MORE && harness_now_ms() < deadline) {
		ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);

		if (n <= 0)
			break;
		c->len += (size_t)n;
		c->r = proxy_parse(c->buf, c->len, PROXY_V2, &c->h, NULL);
	}
	if (fd >= 0) {
		(void)!write(fd, "caught\n", 7);
		close(fd);
	}
	return NULL;
}

static int setup_out_signed(void **state)
{
	struct pp *p = calloc(1, sizeof(*p));
	struct catcher *c = calloc(1, sizeof(*c));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	char key[PATH_MAX + 16], text[3 * PATH_MAX];
	uint8_t secret[32];

	assert_non_null(p);
	assert_non_null(c);
	*state = p;
	assert_int_equal(fixture_init(&p->f, users), 0);
	c->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(c->listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(c->listen_fd, 4), 0);
	assert_int_equal(getsockname(c->listen_fd, (struct sockaddr *)&sin, &len), 0);
	c->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&c->thread, NULL, catcher_run, c), 0);
	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (uint8_t)(i * 7 + 1);
	snprintf(key, sizeof(key), "%s/proxy.key", p->f.dir);
	{
		FILE *kf = fopen(key, "w");

		assert_non_null(kf);
		assert_int_equal(fwrite(secret, 1, sizeof(secret), kf), sizeof(secret));
		fclose(kf);
		assert_int_equal(chmod(key, 0600), 0);
	}
	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"bastion\"; listen = \"127.0.0.1:0\";\n"
		 "  upstream = \"127.0.0.1:%d\"; credentials = \"%s\";\n"
		 "  upstream_proxy_protocol = \"v2\"; upstream_proxy_protocol_key = \"%s\"; } );\n",
		 c->port, p->f.users, key);
	assert_int_equal(fixture_write_config(&p->f, text), 0);
	assert_int_equal(fixture_start(&p->f), 0);
	p->catcher = c;
	return 0;
}

static int teardown_signed(void **state)
{
	struct pp *p = *state;

	pthread_join(p->catcher->thread, NULL);
	close(p->catcher->listen_fd);
	free(p->catcher);
	*state = &p->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* The header the upstream got: the client's address, the session's id (also
 * in the log), the user and the gateway, and a signature proxy_verify()
 * accepts with the gateway's key and refuses with another. */
static void the_upstream_can_verify_who_logged_in(void **state)
{
	struct pp *p = *state;
	struct catcher *c = p->catcher;
	struct proxy_identity id;
	uint8_t secret[32], wrong[32];
	char buf[4096], line[2048], want[PROXY_UNIQUE_ID_MAX + 16];
	const struct sockaddr_in *src;
	int fd = harness_connect_from("127.0.0.44", "127.0.0.1", p->f.port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "caught\n", buf, sizeof(buf), T) > 0);
	close(fd);
	pthread_join(c->thread, NULL);
	c->thread = pthread_self(); /* joined: teardown joins nothing more */
	assert_int_equal(c->r, PROXY_OK);
	assert_int_equal(c->h.family, AF_INET);
	src = (const struct sockaddr_in *)&c->h.src;
	assert_string_equal(inet_ntop(AF_INET, &src->sin_addr, buf, sizeof(buf)), "127.0.0.44");
	for (size_t i = 0; i < sizeof(secret); i++) {
		secret[i] = (uint8_t)(i * 7 + 1);
		wrong[i] = (uint8_t)(secret[i] ^ 1);
	}
	assert_int_equal(
		proxy_verify(&c->h, secret, sizeof(secret), (uint64_t)time(NULL), 60, 0, &id, NULL),
		PROXY_VERIFY_OK);
	assert_string_equal(id.user, "alice");
	assert_string_equal(id.gateway, "bastion");
	assert_true(id.has_unique_id);
	assert_int_not_equal(
		proxy_verify(&c->h, wrong, sizeof(wrong), (uint64_t)time(NULL), 60, 0, &id, NULL),
		PROXY_VERIFY_OK);
	assert_int_equal(fixture_log_wait(&p->f, "session closed", line, sizeof(line)), 0);
	assert_int_equal(
		proxy_verify(&c->h, secret, sizeof(secret), (uint64_t)time(NULL), 60, 0, &id, NULL),
		PROXY_VERIFY_OK);
	snprintf(want, sizeof(want), "session=%s", id.unique_id);
	assert_non_null(strstr(line, want));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(send_proxy_v1_gives_the_client_address, setup_v1,
						teardown),
		cmocka_unit_test_setup_teardown(send_proxy_v2_gives_the_client_address, setup_v2,
						teardown),
		cmocka_unit_test_setup_teardown(penalties_follow_the_header_address,
						setup_penalties, teardown),
		cmocka_unit_test_setup_teardown(anything_else_ends_without_a_prompt, setup_v2,
						teardown),
		cmocka_unit_test_setup_teardown(haproxy_accept_proxy_sees_the_client,
						setup_out_haproxy, teardown),
		cmocka_unit_test_setup_teardown(the_upstream_can_verify_who_logged_in,
						setup_out_signed, teardown_signed),
	};

	return test_exit(cmocka_run_group_tests_name("proxy_protocol", tests, NULL, NULL));
}
