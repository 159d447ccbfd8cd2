/* Unit tests for net: address specifications, ports, formatting and numeric resolution.
 * Table-driven, so each row reads as one line of the specification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testmain.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

struct split_case {
	const char *spec;
	int allow_port_zero;
	int ok;
	const char *host; /* expected when ok */
	const char *port;
};

static const struct split_case split_cases[] = {
	{"127.0.0.1:80", 0, 1, "127.0.0.1", "80"},
	{"[::1]:2323", 0, 1, "::1", "2323"},
	{"*:23", 0, 1, "*", "23"},
	{"localhost:8080", 0, 1, "localhost", "8080"},
	{"1.2.3.4:65535", 0, 1, "1.2.3.4", "65535"},
	{"1.2.3.4:1", 0, 1, "1.2.3.4", "1"},
	{"host:0080", 0, 1, "host", "80"},
	{"[fe80::1%eth0]:22", 0, 1, "fe80::1%eth0", "22"},
	{"[2001:db8::1]:443", 0, 1, "2001:db8::1", "443"},
	{"host:0", 1, 1, "host", "0"},
	{"host:0", 0, 0, NULL, NULL},
	{"::1:80", 0, 0, NULL, NULL},  /* IPv6 needs brackets */
	{"[::1]80", 0, 0, NULL, NULL}, /* ':' after ']' */
	{"[::1]", 0, 0, NULL, NULL},
	{"[::1:80", 0, 0, NULL, NULL}, /* no ']' */
	{"[]:80", 0, 0, NULL, NULL},
	{"[1.2.3.4]:80", 0, 0, NULL, NULL}, /* brackets hold IPv6 only */
	{"1.2.3.4:", 0, 0, NULL, NULL},
	{"1.2.3.4:65536", 0, 0, NULL, NULL},
	{"1.2.3.4:99999999999999999999", 0, 0, NULL, NULL},
	{"1.2.3.4:80x", 0, 0, NULL, NULL},
	{"1.2.3.4:-1", 0, 0, NULL, NULL},
	{"1.2.3.4: 80", 0, 0, NULL, NULL},
	{"1.2.3.4", 0, 0, NULL, NULL},
	{":80", 0, 0, NULL, NULL},
	{"", 0, 0, NULL, NULL},
	{"bad host:80", 0, 0, NULL, NULL},
	{"a/b:80", 0, 0, NULL, NULL},
};

static void test_split_hostport(void **state)
{
	for (size_t i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
		const struct split_case *c = &split_cases[i];
		char host[NET_HOSTLEN] = "", port[NET_PORTLEN] = "";
		struct errbuf err = {""};
		int rc;

		rc = net_split_hostport(c->spec, c->allow_port_zero, host, port, &err);
		if (c->ok) {
			if (rc != 0)
				fail_msg("\"%s\" rejected: %s", c->spec, err.msg);
			assert_string_equal(host, c->host);
			assert_string_equal(port, c->port);
		} else {
			if (rc != -1)
				fail_msg("\"%s\" accepted as host \"%s\" port \"%s\"", c->spec,
					 host, port);
			/* Every rejection explains itself. */
			assert_true(err.msg[0] != '\0');
		}
	}
}

static void test_split_hostport_null(void **state)
{
	char host[NET_HOSTLEN], port[NET_PORTLEN];
	struct errbuf err = {""};

	assert_int_equal(net_split_hostport(NULL, 0, host, port, &err), -1);
	assert_true(err.msg[0] != '\0');
	/* No error buffer is fine too. */
	assert_int_equal(net_split_hostport("x", 0, host, port, NULL), -1);
}

static void test_split_hostport_long_host(void **state)
{
	char spec[NET_HOSTLEN + 16], host[NET_HOSTLEN], port[NET_PORTLEN];
	struct errbuf err = {""};

	/* The longest host that fits, then one byte more. */
	memset(spec, 'a', NET_HOSTLEN - 1);
	strcpy(spec + NET_HOSTLEN - 1, ":80");
	assert_int_equal(net_split_hostport(spec, 0, host, port, &err), 0);
	assert_int_equal(strlen(host), NET_HOSTLEN - 1);

	memset(spec, 'a', NET_HOSTLEN);
	strcpy(spec + NET_HOSTLEN, ":80");
	assert_int_equal(net_split_hostport(spec, 0, host, port, &err), -1);
	assert_non_null(strstr(err.msg, "too long"));
}

struct port_case {
	const char *s;
	int allow_zero;
	int want; /* -1: rejected */
};

static const struct port_case port_cases[] = {
	{"1", 0, 1},   {"80", 0, 80},  {"65535", 0, 65535}, {"0080", 0, 80},
	{"0", 1, 0},   {"0", 0, -1},   {"65536", 0, -1},    {"99999999999999999999999", 0, -1},
	{"", 0, -1},   {"-1", 0, -1},  {"+1", 0, -1},       {" 1", 0, -1},
	{"1 ", 0, -1}, {"80x", 0, -1}, {"0x50", 0, -1},     {"telnet", 0, -1},
};

static void test_parse_port(void **state)
{
	for (size_t i = 0; i < sizeof(port_cases) / sizeof(port_cases[0]); i++) {
		const struct port_case *c = &port_cases[i];
		struct errbuf err = {""};
		int got = net_parse_port(c->s, c->allow_zero, &err);

		if (got != c->want)
			fail_msg("net_parse_port(\"%s\", %d) = %d, want %d", c->s, c->allow_zero,
				 got, c->want);
		if (c->want < 0)
			assert_true(err.msg[0] != '\0');
	}
}

static void test_format_addr_v4(void **state)
{
	struct sockaddr_in sin;
	char buf[NET_ADDRSTRLEN];

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(80);
	assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr), 1);
	net_format_addr((struct sockaddr *)&sin, buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.1:80");
	net_format_host((struct sockaddr *)&sin, buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.1");
	assert_int_equal(net_sockaddr_port((struct sockaddr *)&sin), 80);
}

static void test_format_addr_v6(void **state)
{
	struct sockaddr_in6 sin6;
	char buf[NET_ADDRSTRLEN];

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(65535);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr), 1);
	net_format_addr((struct sockaddr *)&sin6, buf, sizeof(buf));
	assert_string_equal(buf, "[2001:db8::1]:65535");

	/* The longest form still fits NET_ADDRSTRLEN. */
	assert_int_equal(inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
				   &sin6.sin6_addr),
			 1);
	net_format_addr((struct sockaddr *)&sin6, buf, sizeof(buf));
	assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

static void test_format_addr_other(void **state)
{
	struct sockaddr sa;
	char buf[NET_ADDRSTRLEN];

	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	net_format_addr(&sa, buf, sizeof(buf));
	assert_string_equal(buf, "?");
	assert_int_equal(net_sockaddr_port(&sa), 0);

	/* A short buffer truncates, never overflows. */
	{
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(8080)};
		char small[6];

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		net_format_addr((struct sockaddr *)&sin, small, sizeof(small));
		assert_string_equal(small, "127.0");
	}
}

struct resolve_case {
	const char *host;
	int flags;
	int ok;
	int family; /* of the first answer */
	const char *addr;
};

static const struct resolve_case resolve_cases[] = {
	{"127.0.0.1", NET_RESOLVE_NUMERIC, 1, AF_INET, "127.0.0.1:8080"},
	{"::1", NET_RESOLVE_NUMERIC, 1, AF_INET6, "[::1]:8080"},
	{"::1", 0, 1, AF_INET6, "[::1]:8080"}, /* a literal is never filtered by AI_ADDRCONFIG */
	{"0.0.0.0", NET_RESOLVE_NUMERIC | NET_RESOLVE_PASSIVE, 1, AF_INET, "0.0.0.0:8080"},
	{"localhost", NET_RESOLVE_NUMERIC, 0, 0, NULL},
	{"1.2.3.400", NET_RESOLVE_NUMERIC, 0, 0, NULL},
	{"", NET_RESOLVE_NUMERIC, 0, 0, NULL},
};

static void test_resolve_numeric(void **state)
{
	for (size_t i = 0; i < sizeof(resolve_cases) / sizeof(resolve_cases[0]); i++) {
		const struct resolve_case *c = &resolve_cases[i];
		struct errbuf err = {""};
		struct addrinfo *res = NULL;
		char buf[NET_ADDRSTRLEN];
		int rc;

		rc = net_resolve(c->host, "8080", c->flags, &res, &err);
		if (!c->ok) {
			if (rc == 0)
				fail_msg("\"%s\" resolved", c->host);
			assert_non_null(strstr(err.msg, "cannot resolve"));
			continue;
		}
		if (rc != 0)
			fail_msg("\"%s\": %s", c->host, err.msg);
		assert_non_null(res);
		assert_int_equal(res->ai_family, c->family);
		assert_int_equal(res->ai_socktype, SOCK_STREAM);
		net_format_addr(res->ai_addr, buf, sizeof(buf));
		assert_string_equal(buf, c->addr);
		freeaddrinfo(res);
	}
}

static void test_resolve_passive_any(void **state)
{
	struct errbuf err = {""};
	struct addrinfo *res = NULL;
	char buf[NET_ADDRSTRLEN];
	int any = 0;

	/* "*" means every local address, as the wildcard of its family. */
	assert_int_equal(net_resolve("*", "23", NET_RESOLVE_PASSIVE, &res, &err), 0);
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		net_format_addr(ai->ai_addr, buf, sizeof(buf));
		if (strcmp(buf, "0.0.0.0:23") == 0 || strcmp(buf, "[::]:23") == 0)
			any++;
	}
	freeaddrinfo(res);
	assert_true(any >= 1);
}

static void test_listen_ephemeral_and_connect(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct errbuf err = {""};
	char local[NET_ADDRSTRLEN], port[NET_PORTLEN];
	int lfd, cfd, p;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = net_listen((struct sockaddr *)&sin, sizeof(sin), 8, &err);
	if (lfd < 0)
		fail_msg("%s", err.msg);
	net_format_local(lfd, local, sizeof(local));
	assert_true(strncmp(local, "127.0.0.1:", 10) == 0);
	p = net_parse_port(local + 10, 0, &err);
	assert_true(p > 0);

	snprintf(port, sizeof(port), "%d", p);
	cfd = net_dial("127.0.0.1", port, &err);
	if (cfd < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(net_write_all(cfd, "x", 1), 0);
	close(cfd);
	close(lfd);

	/* Now nothing listens there: refused, and said so. */
	cfd = net_dial("127.0.0.1", port, &err);
	assert_int_equal(cfd, -1);
	assert_non_null(strstr(err.msg, "cannot connect to 127.0.0.1:"));
	assert_non_null(strstr(err.msg, "refused"));
}

static void test_parse_cidr(void **state)
{
	static const struct {
		const char *text;
		int ok;
		unsigned bits;
	} rows[] = {
		{"192.0.2.0/24", 1, 24},
		{"192.0.2.1", 1, 32},
		{"::1", 1, 128},
		{"2001:db8::/32", 1, 32},
		{"0.0.0.0/0", 1, 0},
		{"192.0.2.0/33", 0, 0},
		{"2001:db8::/129", 0, 0},
		{"192.0.2.0/", 0, 0},
		{"/24", 0, 0},
		{"host.example/24", 0, 0},
		{"192.0.2.0/2x", 0, 0},
		{"", 0, 0},
		{"::ffff:192.0.2.0/120", 1, 24},
		{"::ffff:192.0.2.7", 1, 32},
		{"::ffff:192.0.2.0/64", 0, 0},
	};
	struct net_cidr c;
	struct errbuf err;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = net_parse_cidr(rows[i].text, &c, &err);

		if (rows[i].ok) {
			assert_int_equal(rc, 0);
			assert_int_equal(c.bits, rows[i].bits);
		} else {
			assert_int_equal(rc, -1);
		}
	}
}

/* Keys: IPv4-mapped IPv6 is IPv4; masks keep the prefix; ranges contain keys. */
static void test_addr_keys(void **state)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 mapped = {.sin6_family = AF_INET6}, v6 = {.sin6_family = AF_INET6};
	uint8_t k4[NET_ADDR_KEY_LEN], km[NET_ADDR_KEY_LEN], k6[NET_ADDR_KEY_LEN];
	struct net_cidr net24, net32, v6net;
	struct errbuf err;

	(void)state;
	inet_pton(AF_INET, "192.0.2.77", &v4.sin_addr);
	inet_pton(AF_INET6, "::ffff:192.0.2.77", &mapped.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2::5", &v6.sin6_addr);
	assert_true(net_addr_key((struct sockaddr *)&v4, k4));
	assert_true(net_addr_key((struct sockaddr *)&mapped, km));
	assert_true(net_addr_key((struct sockaddr *)&v6, k6));
	assert_memory_equal(k4, km, NET_ADDR_KEY_LEN);
	assert_int_equal(k6[0], AF_INET6);
	assert_int_equal(net_parse_cidr("192.0.2.0/24", &net24, &err), 0);
	assert_int_equal(net_parse_cidr("192.0.2.78", &net32, &err), 0);
	assert_int_equal(net_parse_cidr("2001:db8:1::/48", &v6net, &err), 0);
	assert_true(net_cidr_contains(&net24, k4));
	assert_false(net_cidr_contains(&net32, k4));
	assert_true(net_cidr_contains(&v6net, k6));
	assert_false(net_cidr_contains(&v6net, k4));
	net_addr_key_mask(k4, 24);
	assert_int_equal(k4[4], 0);
	assert_int_equal(k4[3], 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_hostport),
		cmocka_unit_test(test_split_hostport_null),
		cmocka_unit_test(test_split_hostport_long_host),
		cmocka_unit_test(test_parse_port),
		cmocka_unit_test(test_format_addr_v4),
		cmocka_unit_test(test_format_addr_v6),
		cmocka_unit_test(test_format_addr_other),
		cmocka_unit_test(test_resolve_numeric),
		cmocka_unit_test(test_resolve_passive_any),
		cmocka_unit_test(test_listen_ephemeral_and_connect),
		cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_addr_keys),
	};

	return test_exit(cmocka_run_group_tests_name("net", tests, NULL, NULL));
}
