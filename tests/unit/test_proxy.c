/* test_proxy: the PROXY protocol module (parsing v1 and v2, building, signing,
 * verifying, keys) as tables of headers and what they must give, and the
 * sockgate-verify tool run on a signed header the way a backend would run it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testmain.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "proxy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t key_a[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
				  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t key_b[32] = {1};

/* ---- helpers ----------------------------------------------------------------------------- */

/* Hex digits, spaces ignored, into out; the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int half = -1;

	for (; *hex != '\0'; hex++) {
		int v = 0;

		if (*hex == ' ')
			continue;
		if (*hex >= '0' && *hex <= '9')
			v = *hex - '0';
		else if (*hex >= 'a' && *hex <= 'f')
			v = *hex - 'a' + 10;
		else
			fail_msg("bad hex digit '%c'", *hex);
		if (half < 0) {
			half = v;
			continue;
		}
		assert_true(n < cap);
		out[n++] = (uint8_t)(half << 4 | v);
		half = -1;
	}
	assert_int_equal(half, -1);
	return n;
}

/* A v2 header: signature, ver_cmd, fam, the body's length, the body (hex). */
static size_t v2_make(uint8_t *out, size_t cap, uint8_t ver_cmd, uint8_t fam, const char *body)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
	size_t n;

	assert_true(cap >= 16);
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	n = unhex(body, out + 16, cap - 16);
	out[14] = (uint8_t)(n >> 8);
	out[15] = (uint8_t)n;
	return 16 + n;
}

static struct sockaddr_storage sa4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage sa6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

/* "ADDR PORT" of an address the parser filled in. */
static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		port = ntohs(sin6->sin6_port);
	}
	snprintf(buf, len, "%s %u", ip, port);
}

/* Every proper prefix of a valid header is NEED_MORE with a lower bound of the
 * header's length, never OK and never a wrong length; the header itself with
 * data after it is OK and takes exactly its own bytes. */
static void check_prefixes(const uint8_t *hdr, size_t len, unsigned accept)
{
	uint8_t buf[PROXY_V2_MAX + 16];
	struct proxy_header h;
	struct errbuf why = {""};

	assert_true(len <= PROXY_V2_MAX);
	for (size_t k = 0; k < len; k++) {
		enum proxy_result r;

		/* A copy of exactly k bytes: ASan would see a read past them. */
		uint8_t *cut = malloc(k > 0 ? k : 1);

		assert_non_null(cut);
		memcpy(cut, hdr, k);
		r = proxy_parse(cut, k, accept, &h, &why);
		free(cut);
		if (r != PROXY_NEED_MORE)
			fail_msg("prefix of %zu of %zu bytes: result %d (%s)", k, len, r, why.msg);
		if (h.length <= k || h.length > len)
			fail_msg("prefix of %zu of %zu bytes: needs %zu", k, len, h.length);
	}
	memcpy(buf, hdr, len);
	memcpy(buf + len, "PAYLOAD\r\n\n\0\r", 13);
	assert_int_equal(proxy_parse(buf, len + 13, accept, &h, &why), PROXY_OK);
	assert_int_equal(h.length, len);
}

/* ---- v1 ---------------------------------------------------------------------------------- */

struct v1_case {
	const char *line;
	enum proxy_result result;
	int family;
	const char *src, *dst; /* "ADDR PORT" when OK */
	const char *why;       /* a part of the message when INVALID */
};

static char v1_worst[PROXY_V1_MAX_LEN + 1], v1_too_long[PROXY_V1_MAX_LEN + 2],
	v1_no_crlf[PROXY_V1_MAX_LEN + 1];

static const struct v1_case v1_cases[] = {
	/* the spec's examples */
	{"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", PROXY_OK, AF_INET,
	 "192.168.0.1 56324", "192.168.0.11 443", NULL},
	{"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", PROXY_OK, AF_INET,
	 "255.255.255.255 65535", "255.255.255.255 65535", NULL},
	{"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	 PROXY_OK, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535",
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535", NULL},
	{"PROXY UNKNOWN\r\n", PROXY_OK, AF_UNSPEC, NULL, NULL, NULL},
	{v1_worst, PROXY_OK, AF_UNSPEC, NULL, NULL, NULL},
	{"PROXY UNKNOWN anything \x01 goes\r\n", PROXY_OK, AF_UNSPEC, NULL, NULL, NULL},
	{"PROXY TCP6 2001:db8::1 ::1 0 22\r\n", PROXY_OK, AF_INET6, "2001:db8::1 0", "::1 22",
	 NULL},
	{"PROXY TCP6 ::ffff:192.0.2.1 2001:DB8::2 1 2\r\n", PROXY_OK, AF_INET6,
	 "::ffff:192.0.2.1 1", "2001:db8::2 2", NULL},
	{"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", PROXY_OK, AF_INET, "0.0.0.0 0", "10.0.0.1 0", NULL},
	/* prefixes of valid lines */
	{"P", PROXY_NEED_MORE, 0, NULL, NULL, NULL},
	{"PROXY", PROXY_NEED_MORE, 0, NULL, NULL, NULL},
	{"PROXY TC", PROXY_NEED_MORE, 0, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 ", PROXY_NEED_MORE, 0, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", PROXY_NEED_MORE, 0, NULL, NULL, NULL},
	{"PROXY UNKNOWN whatever", PROXY_NEED_MORE, 0, NULL, NULL, NULL},
	/* refused as soon as the bytes show it */
	{"GET / HTTP/1.1\r\n", PROXY_INVALID, 0, NULL, NULL, "not a PROXY header"},
	{"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "not a PROXY"},
	{"PROXYTCP4", PROXY_INVALID, 0, NULL, NULL, "not a PROXY header"},
	{"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "protocol"},
	{"PROXY UDP4", PROXY_INVALID, 0, NULL, NULL, "protocol"},
	{"PROXY UNKNOWNX\r\n", PROXY_INVALID, 0, NULL, NULL, "protocol"},
	{"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "empty field"},
	{"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "empty field"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", PROXY_INVALID, 0, NULL, NULL, "empty field"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", PROXY_INVALID, 0, NULL, NULL, "more than 6"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", PROXY_INVALID, 0, NULL, NULL, "5 fields"},
	{"PROXY TCP4\r\n", PROXY_INVALID, 0, NULL, NULL, "2 fields"},
	{"PROXY \r\n", PROXY_INVALID, 0, NULL, NULL, "empty field"},
	{"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP4 1.2.3.4x", PROXY_INVALID, 0, NULL, NULL, "bad address"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 065 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", PROXY_INVALID, 0, NULL, NULL, "bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 123456", PROXY_INVALID, 0, NULL, NULL, "bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", PROXY_INVALID, 0, NULL, NULL, "LF without CR"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", PROXY_INVALID, 0, NULL, NULL, "CR without LF"},
	{"PROXY UNKNOWN a\nb\r\n", PROXY_INVALID, 0, NULL, NULL, "LF without CR"},
	{v1_too_long, PROXY_INVALID, 0, NULL, NULL, "longer than 107 bytes"},
	{v1_no_crlf, PROXY_INVALID, 0, NULL, NULL, "longer than 107 bytes"},
};

static int v1_setup(void **state)
{
	/* 107 bytes with the CRLF: the spec's worst case */
	snprintf(v1_worst, sizeof(v1_worst), "PROXY UNKNOWN %s %s 65535 65535\r\n",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	assert_int_equal(strlen(v1_worst), PROXY_V1_MAX_LEN);
	/* one byte more, and 107 bytes without a CRLF */
	snprintf(v1_too_long, sizeof(v1_too_long), "PROXY UNKNOWN %s %s 65535 655350\r\n",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	assert_int_equal(strlen(v1_too_long), PROXY_V1_MAX_LEN + 1);
	memset(v1_no_crlf, 'x', PROXY_V1_MAX_LEN);
	memcpy(v1_no_crlf, "PROXY UNKNOWN ", 14);
	(void)state;
	return 0;
}

static void test_v1_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(v1_cases); i++) {
		const struct v1_case *c = &v1_cases[i];
		size_t len = strlen(c->line);
		struct proxy_header h;
		struct errbuf why = {""};
		enum proxy_result r;
		uint8_t *copy = malloc(len + 1);

		assert_non_null(copy);
		memcpy(copy, c->line, len);
		r = proxy_parse(copy, len, PROXY_V1 | PROXY_V2, &h, &why);
		free(copy);
		if (r != c->result)
			fail_msg("\"%s\": result %d, expected %d (%s)", c->line, r, c->result,
				 why.msg);
		if (r == PROXY_INVALID) {
			if (strstr(why.msg, c->why) == NULL)
				fail_msg("\"%s\": \"%s\" does not say \"%s\"", c->line, why.msg,
					 c->why);
			continue;
		}
		if (r == PROXY_NEED_MORE) {
			assert_true(h.length > len);
			continue;
		}
		assert_int_equal(h.version, 1);
		assert_int_equal(h.length, len);
		assert_int_equal(h.family, c->family);
		assert_int_equal(h.n_tlvs, 0);
		if (c->src != NULL) {
			char s[80], d[80];

			addr_text(&h.src, s, sizeof(s));
			addr_text(&h.dst, d, sizeof(d));
			assert_string_equal(s, c->src);
			assert_string_equal(d, c->dst);
		}
		check_prefixes((const uint8_t *)c->line, len, PROXY_V1);
	}
	(void)state;
}

/* ---- v2 ---------------------------------------------------------------------------------- */

#define V4_BLOCK "c0000201 c6336402 d431 0017" /* 192.0.2.1:54321 -> 198.51.100.2:23 */
#define V6_BLOCK "20010db8000000000000000000000001 20010db8000000000000000000000002 0001 ffff"

struct v2_case {
	const char *name;
	uint8_t ver_cmd, fam;
	const char *body;
	enum proxy_result result;
	int family;
	bool local, unsupported;
	size_t n_tlvs;
	const char *why;
};

static const struct v2_case v2_cases[] = {
	{"tcp4", 0x21, 0x11, V4_BLOCK, PROXY_OK, AF_INET, false, false, 0, NULL},
	{"tcp6", 0x21, 0x21, V6_BLOCK, PROXY_OK, AF_INET6, false, false, 0, NULL},
	{"local", 0x20, 0x00, "", PROXY_OK, AF_UNSPEC, true, false, 0, NULL},
	/* LOCAL's block, family and all, is ignored (the spec) */
	{"local tcp4", 0x20, 0x11, V4_BLOCK, PROXY_OK, AF_UNSPEC, true, false, 0, NULL},
	{"local odd family", 0x20, 0xff, "0102", PROXY_OK, AF_UNSPEC, true, false, 0, NULL},
	{"unspec", 0x21, 0x00, "", PROXY_OK, AF_UNSPEC, false, false, 0, NULL},
	{"unspec with bytes", 0x21, 0x00, "ffffffff", PROXY_OK, AF_UNSPEC, false, false, 0, NULL},
	{"udp4", 0x21, 0x12, V4_BLOCK, PROXY_OK, AF_UNSPEC, false, true, 0, NULL},
	{"udp6", 0x21, 0x22, V6_BLOCK " e0 0001 41", PROXY_OK, AF_UNSPEC, false, true, 1, NULL},
	{"tcp4 with TLVs", 0x21, 0x11,
	 V4_BLOCK " e0 0005 616c696365 04 0003 000000 01 0002 6832 04 0000", PROXY_OK, AF_INET,
	 false, false, 2, NULL},
	{"empty TLV", 0x21, 0x11, V4_BLOCK " e1 0000", PROXY_OK, AF_INET, false, false, 1, NULL},
	{"unique id of 128", 0x21, 0x11,
	 V4_BLOCK " 05 0080 "
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000000000",
	 PROXY_OK, AF_INET, false, false, 1, NULL},
	{"unique id of 129", 0x21, 0x11,
	 V4_BLOCK " 05 0081 "
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000000000 00",
	 PROXY_INVALID, 0, false, false, 0, "unique ID of 129 bytes"},
	{"ssl", 0x21, 0x11, V4_BLOCK " 20 000b 01 00000000 21 0003 312e33", PROXY_OK, AF_INET,
	 false, false, 1, NULL},
	{"ssl short", 0x21, 0x11, V4_BLOCK " 20 0004 01000000", PROXY_INVALID, 0, false, false, 0,
	 "SSL TLV of 4 bytes"},
	{"sixteen TLVs and padding", 0x21, 0x11,
	 V4_BLOCK " e0 0000 e1 0000 e2 0000 e3 0000 e4 0000 e5 0000 e6 0000 e7 0000"
		  " e8 0000 e9 0000 ea 0000 eb 0000 ec 0000 ed 0000 ee 0000 04 0000 ef 0000",
	 PROXY_OK, AF_INET, false, false, 16, NULL},
	{"seventeen TLVs", 0x21, 0x11,
	 V4_BLOCK " e0 0000 e1 0000 e2 0000 e3 0000 e4 0000 e5 0000 e6 0000 e7 0000"
		  " e8 0000 e9 0000 ea 0000 eb 0000 ec 0000 ed 0000 ee 0000 ef 0000 f0 0000",
	 PROXY_INVALID, 0, false, false, 0, "more than 16 TLVs"},
	{"TLV overruns", 0x21, 0x11, V4_BLOCK " e0 0006 616c696365", PROXY_INVALID, 0, false, false,
	 0, "runs past"},
	{"TLV header cut", 0x21, 0x11, V4_BLOCK " e0 00", PROXY_INVALID, 0, false, false, 0,
	 "cut short"},
	{"short block", 0x21, 0x11, "c0000201 c6336402 d431 00", PROXY_INVALID, 0, false, false, 0,
	 "needs 12"},
	{"short unix block", 0x21, 0x31, "00", PROXY_INVALID, 0, false, false, 0, "needs 216"},
	{"version 1", 0x11, 0x11, V4_BLOCK, PROXY_INVALID, 0, false, false, 0, "version 1"},
	{"version 3", 0x31, 0x11, V4_BLOCK, PROXY_INVALID, 0, false, false, 0, "version 3"},
	{"command 2", 0x22, 0x11, V4_BLOCK, PROXY_INVALID, 0, false, false, 0, "command 2"},
	{"family 4", 0x21, 0x41, V4_BLOCK, PROXY_INVALID, 0, false, false, 0, "0x41"},
	{"transport 3", 0x21, 0x13, V4_BLOCK, PROXY_INVALID, 0, false, false, 0, "0x13"},
	{"unspec transport", 0x21, 0x10, V4_BLOCK, PROXY_INVALID, 0, false, false, 0, "0x10"},
	{"crc32c bad", 0x21, 0x11, V4_BLOCK " 03 0004 00000000", PROXY_INVALID, 0, false, false, 0,
	 "CRC32C mismatch"},
	{"crc32c short", 0x21, 0x11, V4_BLOCK " 03 0003 000000", PROXY_INVALID, 0, false, false, 0,
	 "not of 4 bytes"},
};

static void test_v2_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(v2_cases); i++) {
		const struct v2_case *c = &v2_cases[i];
		uint8_t buf[PROXY_V2_MAX];
		size_t len = v2_make(buf, sizeof(buf), c->ver_cmd, c->fam, c->body);
		struct proxy_header h;
		struct errbuf why = {""};
		enum proxy_result r = proxy_parse(buf, len, PROXY_V2, &h, &why);

		if (r != c->result)
			fail_msg("%s: result %d, expected %d (%s)", c->name, r, c->result, why.msg);
		if (r == PROXY_INVALID) {
			if (strstr(why.msg, c->why) == NULL)
				fail_msg("%s: \"%s\" does not say \"%s\"", c->name, why.msg,
					 c->why);
			continue;
		}
		assert_int_equal(h.version, 2);
		assert_int_equal(h.length, len);
		assert_int_equal(h.family, c->family);
		assert_int_equal(h.local, c->local);
		assert_int_equal(h.family_unsupported, c->unsupported);
		if (h.n_tlvs != c->n_tlvs)
			fail_msg("%s: %zu TLVs, expected %zu", c->name, h.n_tlvs, c->n_tlvs);
		for (size_t t = 0; t < h.n_tlvs; t++) {
			assert_true(h.tlvs[t].value >= buf + 16);
			assert_true(h.tlvs[t].value + h.tlvs[t].len <= buf + len);
		}
		check_prefixes(buf, len, PROXY_V2);
		check_prefixes(buf, len, PROXY_V1 | PROXY_V2);
	}
	(void)state;
}

static void test_v2_addresses_and_tlvs(void **state)
{
	uint8_t buf[256];
	size_t len, n;
	struct proxy_header h;
	struct errbuf why = {""};
	char s[80], d[80];
	const uint8_t *v;

	len = v2_make(buf, sizeof(buf), 0x21, 0x11,
		      V4_BLOCK " e0 0005 616c696365 04 0002 0000 01 0002 6832");
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_OK);
	addr_text(&h.src, s, sizeof(s));
	addr_text(&h.dst, d, sizeof(d));
	assert_string_equal(s, "192.0.2.1 54321");
	assert_string_equal(d, "198.51.100.2 23");
	v = proxy_tlv(&h, 0xE0, &n);
	assert_non_null(v);
	assert_int_equal(n, 5);
	assert_memory_equal(v, "alice", 5);
	assert_ptr_equal(v, buf + 16 + 12 + 3);
	v = proxy_tlv(&h, PROXY_TLV_ALPN, &n);
	assert_int_equal(n, 2);
	assert_memory_equal(v, "h2", 2);
	/* padding is skipped, not kept */
	assert_null(proxy_tlv(&h, PROXY_TLV_NOOP, &n));
	assert_int_equal(n, 0);
	assert_null(proxy_tlv(&h, 0xE1, NULL));

	len = v2_make(buf, sizeof(buf), 0x21, 0x21, V6_BLOCK);
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_OK);
	addr_text(&h.src, s, sizeof(s));
	addr_text(&h.dst, d, sizeof(d));
	assert_string_equal(s, "2001:db8::1 1");
	assert_string_equal(d, "2001:db8::2 65535");
	(void)state;
}

static void test_v2_unix(void **state)
{
	uint8_t buf[PROXY_V2_MAX];
	char body[2 * 216 + 32];
	struct proxy_header h;
	struct errbuf why = {""};
	size_t len;

	memset(body, '0', 2 * 216);
	strcpy(body + 2 * 216, " e0 0001 41");
	len = v2_make(buf, sizeof(buf), 0x21, 0x31, body);
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_OK);
	assert_true(h.family_unsupported);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.src.ss_family, AF_UNSPEC);
	assert_int_equal(h.n_tlvs, 1);
	buf[13] = 0x32;
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_OK);
	assert_true(h.family_unsupported);
	(void)state;
}

static void test_v2_length_cap(void **state)
{
	uint8_t buf[PROXY_V2_MAX + 1];
	struct proxy_header h;
	struct errbuf why = {""};
	size_t len = v2_make(buf, sizeof(buf), 0x21, 0x11, V4_BLOCK);

	/* The fixed part alone tells: no need to wait for 64 KiB. */
	buf[14] = buf[15] = 0xff;
	assert_int_equal(proxy_parse(buf, 16, PROXY_V2, &h, &why), PROXY_INVALID);
	assert_non_null(strstr(why.msg, "PROXY v2 header of 65551 bytes"));
	/* 1024 in all is the most */
	buf[14] = (PROXY_V2_MAX - 16) >> 8;
	buf[15] = (PROXY_V2_MAX - 16) & 0xff;
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_NEED_MORE);
	assert_int_equal(h.length, PROXY_V2_MAX);
	buf[15]++;
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_INVALID);
	assert_non_null(strstr(why.msg, "1025 bytes"));
	(void)state;
}

static void test_crc32c(void **state)
{
	uint8_t buf[128];
	struct proxy_header h;
	struct errbuf why = {""};
	size_t len;
	uint32_t crc;

	/* RFC 3720's check value, and the same in two pieces */
	assert_int_equal(proxy_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(proxy_crc32c(proxy_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
	assert_int_equal(proxy_crc32c(0, "", 0), 0);

	/* A header with its CRC32C filled in as the spec says: computed over it
	 * with the field zero. */
	len = v2_make(buf, sizeof(buf), 0x21, 0x11, V4_BLOCK " e0 0002 6869 03 0004 00000000");
	crc = proxy_crc32c(0, buf, len);
	buf[len - 4] = (uint8_t)(crc >> 24);
	buf[len - 3] = (uint8_t)(crc >> 16);
	buf[len - 2] = (uint8_t)(crc >> 8);
	buf[len - 1] = (uint8_t)crc;
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(h.n_tlvs, 2);
	check_prefixes(buf, len, PROXY_V2);
	/* any other byte changed */
	buf[16 + 12 + 3] ^= 0x20;
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_INVALID);
	assert_non_null(strstr(why.msg, "CRC32C mismatch"));
	buf[16 + 12 + 3] ^= 0x20;
	buf[17] ^= 1;
	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_INVALID);
	(void)state;
}

static void test_accept_mask(void **state)
{
	const char *v1 = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
	uint8_t v2[64];
	size_t v2_len = v2_make(v2, sizeof(v2), 0x21, 0x11, V4_BLOCK);
	struct proxy_header h;
	struct errbuf why = {""};

	assert_int_equal(proxy_parse(v1, strlen(v1), PROXY_V1, &h, &why), PROXY_OK);
	assert_int_equal(proxy_parse(v1, strlen(v1), PROXY_V2, &h, &why), PROXY_INVALID);
	assert_string_equal(why.msg, "v1 header where only v2 is accepted");
	/* already from its first bytes */
	assert_int_equal(proxy_parse(v1, 3, PROXY_V2, &h, &why), PROXY_INVALID);
	assert_int_equal(proxy_parse(v2, v2_len, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_parse(v2, v2_len, PROXY_V1, &h, &why), PROXY_INVALID);
	assert_string_equal(why.msg, "v2 header where only v1 is accepted");
	assert_int_equal(proxy_parse(v2, 5, PROXY_V1, &h, &why), PROXY_INVALID);
	assert_int_equal(proxy_parse(v2, v2_len, 0, &h, &why), PROXY_INVALID);
	/* nothing yet: NEED_MORE, and the least either version could take */
	assert_int_equal(proxy_parse("", 0, PROXY_V1 | PROXY_V2, &h, &why), PROXY_NEED_MORE);
	assert_int_equal(h.length, 15);
	assert_int_equal(proxy_parse("", 0, PROXY_V2, &h, &why), PROXY_NEED_MORE);
	assert_int_equal(h.length, 16);
	/* a v2 signature gone wrong in its 12 bytes */
	v2[7] = 'X';
	assert_int_equal(proxy_parse(v2, v2_len, PROXY_V2, &h, &why), PROXY_INVALID);
	assert_string_equal(why.msg, "not a PROXY header");
	(void)state;
}

/* ---- building ---------------------------------------------------------------------------- */

struct build_v1_case {
	struct sockaddr_storage src, dst;
	const char *line;
};

static void test_build_v1(void **state)
{
	struct sockaddr_storage un;
	struct build_v1_case cases[] = {
		{sa4("192.0.2.1", 54321), sa4("198.51.100.2", 23),
		 "PROXY TCP4 192.0.2.1 198.51.100.2 54321 23\r\n"},
		{sa6("2001:db8::1", 1), sa6("::1", 0), "PROXY TCP6 2001:db8::1 ::1 1 0\r\n"},
		{sa6("::ffff:192.0.2.1", 1), sa6("::ffff:10.0.0.1", 2),
		 "PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n"},
		{sa6("::ffff:192.0.2.1", 1), sa4("10.0.0.1", 2),
		 "PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n"},
		{sa6("2001:db8::1", 1), sa4("10.0.0.1", 2), "PROXY UNKNOWN\r\n"},
		{sa4("10.0.0.1", 2), sa6("2001:db8::1", 1), "PROXY UNKNOWN\r\n"},
		{sa6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
		 sa6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
		 "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"},
	};
	char buf[PROXY_V1_MAX_LEN + 1];
	struct proxy_header h;
	struct errbuf why = {""};
	ssize_t n;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct build_v1_case *c = &cases[i];

		n = proxy_build_v1((struct sockaddr *)&c->src, (struct sockaddr *)&c->dst, buf,
				   sizeof(buf));
		assert_int_equal(n, strlen(c->line));
		assert_string_equal(buf, c->line);
		assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V1, &h, &why), PROXY_OK);
		assert_int_equal(h.length, n);
		/* one byte short of room (the NUL counts) */
		assert_int_equal(proxy_build_v1((struct sockaddr *)&c->src,
						(struct sockaddr *)&c->dst, buf, (size_t)n),
				 -1);
	}
	/* round trip: what was built parses back to the addresses */
	n = proxy_build_v1((struct sockaddr *)&cases[1].src, (struct sockaddr *)&cases[1].dst, buf,
			   sizeof(buf));
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V1, &h, &why), PROXY_OK);
	assert_memory_equal(&h.src, &cases[1].src, sizeof(struct sockaddr_in6));
	assert_memory_equal(&h.dst, &cases[1].dst, sizeof(struct sockaddr_in6));
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	assert_int_equal(
		proxy_build_v1((struct sockaddr *)&un, (struct sockaddr *)&un, buf, sizeof(buf)),
		15);
	assert_int_equal(proxy_build_v1(NULL, NULL, buf, sizeof(buf)), 15);
	assert_string_equal(buf, "PROXY UNKNOWN\r\n");
	(void)state;
}

/* A proxy_out for the tests: alice through gw to 10.0.0.1:23, signed with key_a. */
static struct sockaddr_storage out_src, out_dst;

static struct proxy_out sample_out(void)
{
	struct proxy_out o = {
		.unique_id = "c0ffee-1",
		.user = "alice",
		.gateway = "gw",
		.target = "10.0.0.1:23",
		.key = key_a,
		.key_len = sizeof(key_a),
		.now = 1700000000,
	};

	out_src = sa4("192.0.2.1", 54321);
	out_dst = sa4("198.51.100.2", 2323);
	o.src = (struct sockaddr *)&out_src;
	o.dst = (struct sockaddr *)&out_dst;
	return o;
}

static void test_build_v2_round_trip(void **state)
{
	struct sockaddr_storage m1 = sa6("::ffff:192.0.2.1", 1), m2 = sa6("::ffff:10.0.0.1", 2),
				v6 = sa6("2001:db8::7", 3), v4 = sa4("10.0.0.1", 2);
	uint8_t buf[PROXY_V2_MAX];
	struct proxy_header h;
	struct proxy_identity id;
	struct errbuf why = {""};
	struct proxy_out o = sample_out();
	ssize_t n;
	size_t len;
	const uint8_t *v;

	/* with a key: every TLV, the signature last */
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(h.length, n);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(buf[12], 0x21);
	assert_int_equal(buf[13], 0x11);
	assert_memory_equal(&h.src, &out_src, sizeof(struct sockaddr_in));
	assert_memory_equal(&h.dst, &out_dst, sizeof(struct sockaddr_in));
	assert_int_equal(h.n_tlvs, 5);
	v = proxy_tlv(&h, PROXY_TLV_UNIQUE_ID, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(v, "c0ffee-1", 8);
	v = proxy_tlv(&h, 0xE0, &len);
	assert_int_equal(len, 5);
	assert_memory_equal(v, "alice", 5);
	v = proxy_tlv(&h, 0xE1, &len);
	assert_memory_equal(v, "gw", 2);
	v = proxy_tlv(&h, 0xE3, &len);
	assert_int_equal(len, 11);
	v = proxy_tlv(&h, 0xE2, &len);
	assert_int_equal(len, PROXY_SIG_LEN);
	assert_memory_equal(v, "\0\0\0\0\x65\x53\xf1\x00", 8);
	assert_ptr_equal(v + PROXY_SIG_LEN, buf + n);
	check_prefixes(buf, (size_t)n, PROXY_V2);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, &id, &why),
			 PROXY_VERIFY_OK);
	assert_string_equal(id.user, "alice");
	assert_string_equal(id.gateway, "gw");
	assert_string_equal(id.target, "10.0.0.1:23");
	assert_string_equal(id.unique_id, "c0ffee-1");
	assert_true(id.has_user && id.has_gateway && id.has_target && id.has_unique_id);
	assert_int_equal(id.signed_at, 1700000000);

	/* without a key: no signature TLV; fewer TLVs, NULL ones left out */
	o.key = NULL;
	o.target = NULL;
	o.unique_id = NULL;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(h.n_tlvs, 2);
	assert_null(proxy_tlv(&h, 0xE2, NULL));
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, &id, &why),
			 PROXY_VERIFY_NO_SIGNATURE);
	assert_non_null(strstr(why.msg, "no signature"));

	/* IPv6, another TLV base */
	o = sample_out();
	o.src = (struct sockaddr *)&v6;
	o.dst = (struct sockaddr *)&v6;
	o.user_tlv = 0xEC;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(h.family, AF_INET6);
	assert_memory_equal(&h.src, &v6, sizeof(struct sockaddr_in6));
	assert_non_null(proxy_tlv(&h, 0xEE, NULL));
	assert_non_null(proxy_tlv(&h, 0xEF, NULL));
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0xEC, &id, &why),
			 PROXY_VERIFY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, &id, &why),
			 PROXY_VERIFY_NO_SIGNATURE);

	/* IPv4-mapped on both sides: sent as IPv4 */
	o.src = (struct sockaddr *)&m1;
	o.dst = (struct sockaddr *)&m2;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_int_equal(buf[13], 0x11);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0xEC, &id, &why),
			 PROXY_VERIFY_OK);

	/* IPv4 beside IPv6: both as IPv6, the IPv4 one mapped */
	o.src = (struct sockaddr *)&v4;
	o.dst = (struct sockaddr *)&v6;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_int_equal(buf[13], 0x21);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(h.family, AF_INET6);
	assert_true(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&h.src)->sin6_addr));
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&h.src)->sin6_port), 2);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0xEC, &id, &why),
			 PROXY_VERIFY_OK);
	(void)state;
}

static void test_build_v2_limits(void **state)
{
	char long_name[PROXY_NAME_MAX + 2], long_id[PROXY_UNIQUE_ID_MAX + 2];
	struct sockaddr_storage un;
	uint8_t buf[PROXY_V2_MAX], short_key[PROXY_KEY_MIN - 1] = {0};
	struct proxy_out o = sample_out();
	struct proxy_header h;
	struct errbuf why = {""};
	ssize_t n;

	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(proxy_build_v2(&o, buf, (size_t)n), n);
	assert_int_equal(proxy_build_v2(&o, buf, (size_t)n - 1), -1);

	/* the longest fields still fit in PROXY_V2_MAX, over IPv6 */
	memset(long_name, 'n', PROXY_NAME_MAX);
	long_name[PROXY_NAME_MAX] = '\0';
	memset(long_id, 'i', PROXY_UNIQUE_ID_MAX);
	long_id[PROXY_UNIQUE_ID_MAX] = '\0';
	un = sa6("2001:db8::1", 1);
	o.src = o.dst = (struct sockaddr *)&un;
	o.user = o.gateway = o.target = long_name;
	o.unique_id = long_id;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_true(n > 0 && n <= PROXY_V2_MAX);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_OK);
	/* one byte more of any is refused */
	long_name[PROXY_NAME_MAX] = 'n';
	long_name[PROXY_NAME_MAX + 1] = '\0';
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);
	o.user = o.gateway = o.target = "x";
	long_id[PROXY_UNIQUE_ID_MAX] = 'i';
	long_id[PROXY_UNIQUE_ID_MAX + 1] = '\0';
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);

	o = sample_out();
	o.user_tlv = 0xED;
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);
	o.user_tlv = 0xDF;
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);
	o = sample_out();
	o.key = short_key;
	o.key_len = sizeof(short_key);
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);
	o = sample_out();
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	o.src = (struct sockaddr *)&un;
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);
	o.src = NULL;
	assert_int_equal(proxy_build_v2(&o, buf, sizeof(buf)), -1);
	(void)state;
}

/* ---- verifying --------------------------------------------------------------------------- */

/* The layout of sockgate-proxy(7) computed independently (Python's hmac, from
 * the page): alice through gw, unique id u-1, no target, T = 0xE0, key bytes
 * 0..31, signed at 1700000000. If this fails, the page and the code disagree. */
static const char known_answer[] =
	"0d0a0d0a000d0a515549540a2111004ac0000201c6336402d4310017050003752d31e00005616c6963"
	"65e100026777e20028000000006553f100190f6d8bbdf4e28185c2a6b42c4dd0ca44f453b517f89420"
	"2a016aa5ed91a812";

static void test_verify_known_answer(void **state)
{
	uint8_t buf[128], built[128];
	struct proxy_header h;
	struct proxy_identity id;
	struct errbuf why = {""};
	size_t len = unhex(known_answer, buf, sizeof(buf));
	struct proxy_out o = sample_out();

	assert_int_equal(proxy_parse(buf, len, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), 1700000000, 0, 0, &id, &why),
			 PROXY_VERIFY_OK);
	assert_string_equal(id.user, "alice");
	assert_false(id.has_target);
	assert_string_equal(id.target, "");
	/* and the builder writes those very bytes */
	out_dst = sa4("198.51.100.2", 23);
	o.unique_id = "u-1";
	o.target = NULL;
	assert_int_equal(proxy_build_v2(&o, built, sizeof(built)), len);
	assert_memory_equal(built, buf, len);
	(void)state;
}

/* Builds a, then b with a's MAC in place of its own (the signature TLV is
 * last, so its MAC is the last 32 bytes; b keeps its timestamp), and verifies
 * b. */
static enum proxy_verdict verify_swapped(const struct proxy_out *a, const struct proxy_out *b,
					 struct errbuf *why)
{
	uint8_t ba[PROXY_V2_MAX], bb[PROXY_V2_MAX];
	struct proxy_header h;
	ssize_t na = proxy_build_v2(a, ba, sizeof(ba)), nb = proxy_build_v2(b, bb, sizeof(bb));

	assert_true(na > 0 && nb > 0);
	memcpy(bb + nb - 32, ba + na - 32, 32);
	assert_int_equal(proxy_parse(bb, (size_t)nb, PROXY_V2, &h, why), PROXY_OK);
	return proxy_verify(&h, key_a, sizeof(key_a), a->now, 0, 0, NULL, why);
}

static void test_verify_every_field_counts(void **state)
{
	struct sockaddr_storage other4 = sa4("192.0.2.9", 54321), port4 = sa4("192.0.2.1", 54322),
				mapped = sa6("::ffff:192.0.2.1", 54321);
	struct proxy_out a = sample_out(), b;
	struct errbuf why = {""};
	const struct proxy_out *bp = &b;
	int n = 0;

	/* the same header verifies, as a control */
	b = a;
	assert_int_equal(verify_swapped(&a, bp, &why), PROXY_VERIFY_OK);

#define CHANGED(what, change)                                                                      \
	do {                                                                                       \
		b = sample_out();                                                                  \
		why.msg[0] = '\0';                                                                 \
		change;                                                                            \
		if (verify_swapped(&a, bp, &why) != PROXY_VERIFY_BAD_SIGNATURE)                    \
			fail_msg("%s changed, yet not a bad signature (%s)", what, why.msg);       \
		n++;                                                                               \
	} while (0)

	CHANGED("user", b.user = "alicf");
	CHANGED("user absent", b.user = NULL);
	CHANGED("user empty", b.user = "");
	CHANGED("gateway", b.gateway = "gx");
	CHANGED("gateway absent", b.gateway = NULL);
	CHANGED("target", b.target = "10.0.0.1:24");
	CHANGED("target absent", b.target = NULL);
	CHANGED("unique id", b.unique_id = "c0ffee-2");
	CHANGED("unique id absent", b.unique_id = NULL);
	CHANGED("source address", b.src = (struct sockaddr *)&other4);
	CHANGED("source port", b.src = (struct sockaddr *)&port4);
	CHANGED("destination", b.dst = (struct sockaddr *)&other4);
	CHANGED("timestamp", b.now = a.now + 1);
	CHANGED("user moved to gateway", {
		b.user = NULL;
		b.gateway = "alice";
	});
#undef CHANGED
	assert_int_equal(n, 14);
	/* absent and empty differ */
	a = sample_out();
	a.target = NULL;
	b = sample_out();
	b.target = "";
	assert_int_equal(verify_swapped(&a, bp, &why), PROXY_VERIFY_BAD_SIGNATURE);
	/* an IPv4-mapped address is that IPv4 address: sent, and signed, as one */
	a = sample_out();
	b = sample_out();
	b.src = (struct sockaddr *)&mapped;
	assert_int_equal(verify_swapped(&a, bp, &why), PROXY_VERIFY_OK);
	(void)state;
}

static void test_verify_bytes_flipped(void **state)
{
	uint8_t buf[PROXY_V2_MAX];
	struct proxy_out o = sample_out();
	ssize_t n = proxy_build_v2(&o, buf, sizeof(buf));
	struct proxy_header h;
	struct errbuf why = {""};

	/* Every bit of it: the header no longer parses, or its verdict is no
	 * longer OK (the family byte included). */
	for (ssize_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			enum proxy_verdict v;

			buf[i] ^= (uint8_t)(1u << bit);
			if (proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why) == PROXY_OK) {
				v = proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why);
				if (v == PROXY_VERIFY_OK)
					fail_msg("byte %zd bit %d flipped, still verified", i, bit);
			}
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_OK);
	(void)state;
}

struct age_case {
	int64_t delta; /* verifier's clock minus the timestamp */
	unsigned max_age;
	enum proxy_verdict verdict;
	const char *why;
};

static void test_verify_time(void **state)
{
	static const struct age_case cases[] = {
		{0, 0, PROXY_VERIFY_OK, NULL},
		{60, 0, PROXY_VERIFY_OK, NULL},
		{61, 0, PROXY_VERIFY_TOO_OLD, "too old: signed 61 s ago (at most 60)"},
		{86400, 0, PROXY_VERIFY_TOO_OLD, "too old"},
		{10, 10, PROXY_VERIFY_OK, NULL},
		{11, 10, PROXY_VERIFY_TOO_OLD, "too old"},
		{-5, 0, PROXY_VERIFY_OK, NULL},
		{-6, 0, PROXY_VERIFY_FUTURE, "from the future: signed 6 s ahead"},
		{-3600, 3600, PROXY_VERIFY_FUTURE, "from the future"},
	};
	uint8_t buf[PROXY_V2_MAX];
	struct proxy_out o = sample_out();
	ssize_t n = proxy_build_v2(&o, buf, sizeof(buf));
	struct proxy_header h;

	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, NULL), PROXY_OK);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct errbuf why = {""};
		struct proxy_identity id;
		enum proxy_verdict v = proxy_verify(&h, key_a, sizeof(key_a),
						    (uint64_t)((int64_t)o.now + cases[i].delta),
						    cases[i].max_age, 0, &id, &why);

		if (v != cases[i].verdict)
			fail_msg("%+lld s, max age %u: %s (%s)", (long long)cases[i].delta,
				 cases[i].max_age, proxy_verdict_str(v), why.msg);
		if (cases[i].why != NULL && strstr(why.msg, cases[i].why) == NULL)
			fail_msg("\"%s\" does not say \"%s\"", why.msg, cases[i].why);
		/* nothing of an identity that failed */
		if (v != PROXY_VERIFY_OK)
			assert_string_equal(id.user, "");
	}
	(void)state;
}

/* buf holds a v2 header of *n bytes: appends a TLV and fixes the length. */
static void append_tlv(uint8_t *buf, ssize_t *n, uint8_t type, const char *value, size_t len)
{
	size_t body;

	buf[*n] = type;
	buf[*n + 1] = (uint8_t)(len >> 8);
	buf[*n + 2] = (uint8_t)len;
	memcpy(buf + *n + 3, value, len);
	*n += 3 + (ssize_t)len;
	body = (size_t)*n - 16;
	buf[14] = (uint8_t)(body >> 8);
	buf[15] = (uint8_t)body;
}

static void test_verify_refusals(void **state)
{
	uint8_t buf[PROXY_V2_MAX];
	struct proxy_out o = sample_out();
	struct proxy_header h;
	struct errbuf why = {""};
	const char *v1 = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
	ssize_t n;

	/* another key */
	n = proxy_build_v2(&o, buf, sizeof(buf));
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_b, sizeof(key_b), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_BAD_SIGNATURE);
	assert_non_null(strstr(why.msg, "bad signature"));
	/* a key too short to check anything with */
	assert_int_equal(proxy_verify(&h, key_a, 16, o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_BAD_SIGNATURE);
	assert_int_equal(proxy_verify(&h, NULL, 0, o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_BAD_SIGNATURE);
	/* a TLV base out of range */
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0xF0, NULL, &why),
			 PROXY_VERIFY_MALFORMED);

	/* a v1 header cannot carry a signature */
	assert_int_equal(proxy_parse(v1, strlen(v1), PROXY_V1, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_NO_SIGNATURE);

	/* a second user TLV after the signed one */
	n = proxy_build_v2(&o, buf, sizeof(buf));
	append_tlv(buf, &n, 0xE0, "root", 4);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_MALFORMED);
	assert_non_null(strstr(why.msg, "malformed: TLV 0xe0 appears twice"));
	/* a second signature */
	n = proxy_build_v2(&o, buf, sizeof(buf));
	append_tlv(buf, &n, 0xE2, (const char *)buf + n - PROXY_SIG_LEN, PROXY_SIG_LEN);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_MALFORMED);
	/* a signature of the wrong size */
	o.key = NULL;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	append_tlv(buf, &n, 0xE2, "0123456789012345678901234567890123456789X", 41);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_MALFORMED);
	/* a NUL inside a name would cut the copy short */
	o = sample_out();
	o.target = NULL;
	n = proxy_build_v2(&o, buf, sizeof(buf));
	append_tlv(buf, &n, 0xE3, "a\0b", 3);
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_MALFORMED);
	/* LOCAL: its block is skipped, a signature in it too */
	n = v2_make(buf, sizeof(buf), 0x20, 0x00,
		    "e2 0028 00000000000000000000000000000000000000000000000000000000"
		    "000000000000000000000000000000000000000000000000");
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_NO_SIGNATURE);
	n = v2_make(buf, sizeof(buf), 0x21, 0x12,
		    V4_BLOCK " e2 0028 00000000000000000000000000000000000000000000000000000000"
			     "000000000000000000000000000000000000000000000000");
	assert_int_equal(proxy_parse(buf, (size_t)n, PROXY_V2, &h, &why), PROXY_OK);
	assert_int_equal(proxy_verify(&h, key_a, sizeof(key_a), o.now, 0, 0, NULL, &why),
			 PROXY_VERIFY_MALFORMED);
	assert_string_equal(proxy_verdict_str(PROXY_VERIFY_TOO_OLD), "too old");
	(void)state;
}

/* ---- keys -------------------------------------------------------------------------------- */

struct key_dir {
	char dir[64];
	char path[96];
};

static void key_write(const char *path, size_t len, mode_t mode)
{
	uint8_t bytes[2048];
	int fd;

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 7 + 1);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int key_setup(void **state)
{
	struct key_dir *k = calloc(1, sizeof(*k));

	assert_non_null(k);
	snprintf(k->dir, sizeof(k->dir), "/tmp/test_proxy.XXXXXX");
	assert_non_null(mkdtemp(k->dir));
	snprintf(k->path, sizeof(k->path), "%s/key", k->dir);
	*state = k;
	return 0;
}

static int key_teardown(void **state)
{
	struct key_dir *k = *state;

	unlink(k->path);
	rmdir(k->dir);
	free(k);
	return 0;
}

static void test_key_load(void **state)
{
	struct key_dir *k = *state;
	uint8_t key[PROXY_KEY_MAX];
	struct errbuf err = {""};
	size_t len = 0;
	uid_t other = getuid() == 0 ? 12345 : getuid() + 1;

	key_write(k->path, 32, 0600);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), 0);
	assert_int_equal(len, 32);
	assert_int_equal(key[0], 1);
	assert_int_equal(key[31], (uint8_t)(31 * 7 + 1));
	key_write(k->path, 288, 0440);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), 0);
	assert_int_equal(len, 288);
	key_write(k->path, PROXY_KEY_MAX, 0400);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), 0);
	/* room for less than the file */
	assert_int_equal(proxy_key_load(k->path, getuid(), key, 64, &len, &err), -1);

	key_write(k->path, PROXY_KEY_MAX + 1, 0600);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), -1);
	assert_non_null(strstr(err.msg, "larger than 1024 bytes"));
	key_write(k->path, 31, 0600);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), -1);
	assert_non_null(strstr(err.msg, "a key of 31 bytes; at least 32"));
	key_write(k->path, 0, 0600);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), -1);
	key_write(k->path, 32, 0620);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), -1);
	assert_non_null(strstr(err.msg, "group or others can write it (mode 0620)"));
	key_write(k->path, 32, 0602);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), -1);
	assert_non_null(strstr(err.msg, k->path));

	/* owned by someone who is neither root nor the owner expected */
	key_write(k->path, 32, 0600);
	if (getuid() == 0) {
		assert_int_equal(chown(k->path, other, (gid_t)-1), 0);
		assert_int_equal(proxy_key_load(k->path, 0, key, sizeof(key), &len, &err), -1);
		assert_non_null(strstr(err.msg, "owned by uid 12345; expected root or uid 0"));
		assert_int_equal(proxy_key_load(k->path, other, key, sizeof(key), &len, &err), 0);
	} else {
		assert_int_equal(proxy_key_load(k->path, other, key, sizeof(key), &len, &err), -1);
		assert_non_null(strstr(err.msg, "owned by uid"));
	}
	unlink(k->path);
	assert_int_equal(proxy_key_load(k->path, getuid(), key, sizeof(key), &len, &err), -1);
	assert_non_null(strstr(err.msg, "cannot open"));
	assert_int_equal(proxy_key_load(k->dir, getuid(), key, sizeof(key), &len, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	explicit_bzero(key, sizeof(key));
}

/* ---- sockgate-verify --------------------------------------------------------------------- */

struct tool_run {
	int exit_code;
	char out[4096];
	char err[4096];
};

/* Runs sockgate-verify with args (after the program name), env added, and
 * input on its standard input (then EOF). */
static void tool_run(const char *const *args, const char *const *env, const void *input, size_t len,
		     struct tool_run *r)
{
	const char *argv[16] = {"sockgate-verify"};
	struct harness_proc p;
	ssize_t n;
	size_t i;

	for (i = 0; args[i] != NULL; i++) {
		assert_true(i + 2 < ARRAY_SIZE(argv));
		argv[i + 1] = args[i];
	}
	argv[i + 1] = NULL;
	memset(r, 0, sizeof(*r));
	assert_int_equal(harness_spawn(&p, argv, env, 0), 0);
	/* The tool may refuse before reading it all: EPIPE is fine then. */
	harness_write_all(p.in_fd, input, len, HARNESS_TIMEOUT_MS);
	close(p.in_fd);
	p.in_fd = -1;
	n = harness_read_all(p.out_fd, r->out, sizeof(r->out) - 1, HARNESS_TIMEOUT_MS);
	assert_true(n >= 0);
	r->out[n] = '\0';
	assert_int_equal(harness_wait_exit(&p, HARNESS_TIMEOUT_MS), 0);
	n = read(p.err_fd, r->err, sizeof(r->err) - 1);
	r->err[n > 0 ? n : 0] = '\0';
	r->exit_code = p.exit_code;
	if (harness_wrapper_failed(p.exit_code))
		fail_msg("the checker found errors in sockgate-verify:\n%s", r->err);
	harness_cleanup(&p);
}

static void test_tool(void **state)
{
	struct key_dir *k = *state;
	uint8_t input[PROXY_V2_MAX + 64];
	struct proxy_out o = sample_out();
	struct tool_run r;
	ssize_t n;
	const char *exec_args[] = {
		"--key",
		k->path,
		"--exec",
		"/bin/sh",
		"-c",
		"echo \"$SOCKGATE_USER $SOCKGATE_GATEWAY $SOCKGATE_TARGET $SOCKGATE_UNIQUE_ID "
		"$REMOTE_ADDR $REMOTE_PORT\"; cat",
		NULL};
	const char *print_args[] = {"--key", k->path, NULL};
	const char *unset_args[] = {"--key",   k->path, "-e",
				    "/bin/sh", "-c",    "echo \"[${SOCKGATE_TARGET-unset}]\"",
				    NULL};
	const char *forged_env[] = {"SOCKGATE_TARGET=forged", NULL};
	const char *no_key[] = {"--exec", "/bin/true", NULL};
	const char *bad_age[] = {"--key", k->path, "--max-age", "0", NULL};

	/* the key the gateway signs with: key_a */
	unlink(k->path);
	{
		int fd = open(k->path, O_WRONLY | O_CREAT | O_EXCL, 0600);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, key_a, sizeof(key_a)), sizeof(key_a));
		close(fd);
	}
	o.now = (uint64_t)time(NULL);
	n = proxy_build_v2(&o, input, sizeof(input));
	assert_true(n > 0);
	memcpy(input + n, "hello\nworld\n", 12);

	/* --exec: the identity in the environment, the payload on stdin intact */
	tool_run(exec_args, NULL, input, (size_t)n + 12, &r);
	if (r.exit_code != 0)
		fail_msg("exit %d: %s", r.exit_code, r.err);
	assert_string_equal(r.out, "alice gw 10.0.0.1:23 c0ffee-1 192.0.2.1 54321\nhello\nworld\n");

	/* printing */
	tool_run(print_args, NULL, input, (size_t)n, &r);
	assert_int_equal(r.exit_code, 0);
	assert_string_equal(r.out, "user=alice gateway=gw target=10.0.0.1:23 "
				   "client=192.0.2.1:54321 unique_id=c0ffee-1\n");

	/* an absent TLV is unset, whatever the environment said */
	o.target = NULL;
	n = proxy_build_v2(&o, input, sizeof(input));
	tool_run(unset_args, forged_env, input, (size_t)n, &r);
	assert_int_equal(r.exit_code, 0);
	assert_string_equal(r.out, "[unset]\n");

	/* signed with another key: refused, and the command never runs */
	o.key = key_b;
	n = proxy_build_v2(&o, input, sizeof(input));
	tool_run(exec_args, NULL, input, (size_t)n, &r);
	assert_int_equal(r.exit_code, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "sockgate-verify: refused: bad signature"));

	/* too old */
	o = sample_out();
	o.now = (uint64_t)time(NULL) - 3600;
	n = proxy_build_v2(&o, input, sizeof(input));
	tool_run(exec_args, NULL, input, (size_t)n, &r);
	assert_int_equal(r.exit_code, 1);
	assert_non_null(strstr(r.err, "too old"));

	/* cut short, and a v1 header */
	o.now = (uint64_t)time(NULL);
	n = proxy_build_v2(&o, input, sizeof(input));
	tool_run(exec_args, NULL, input, (size_t)n - 1, &r);
	assert_int_equal(r.exit_code, 1);
	assert_non_null(strstr(r.err, "ended after"));
	tool_run(exec_args, NULL, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, &r);
	assert_int_equal(r.exit_code, 1);
	assert_non_null(strstr(r.err, "v1 header where only v2 is accepted"));

	/* usage errors */
	tool_run(no_key, NULL, "", 0, &r);
	assert_int_equal(r.exit_code, 2);
	assert_non_null(strstr(r.err, "--key FILE is required"));
	tool_run(bad_age, NULL, "", 0, &r);
	assert_int_equal(r.exit_code, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_v1_table, v1_setup),
		cmocka_unit_test(test_v2_table),
		cmocka_unit_test(test_v2_addresses_and_tlvs),
		cmocka_unit_test(test_v2_unix),
		cmocka_unit_test(test_v2_length_cap),
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_accept_mask),
		cmocka_unit_test(test_build_v1),
		cmocka_unit_test(test_build_v2_round_trip),
		cmocka_unit_test(test_build_v2_limits),
		cmocka_unit_test(test_verify_known_answer),
		cmocka_unit_test(test_verify_every_field_counts),
		cmocka_unit_test(test_verify_bytes_flipped),
		cmocka_unit_test(test_verify_time),
		cmocka_unit_test(test_verify_refusals),
		cmocka_unit_test_setup_teardown(test_key_load, key_setup, key_teardown),
		cmocka_unit_test_setup_teardown(test_tool, key_setup, key_teardown),
	};

	return test_exit(cmocka_run_group_tests_name("proxy", tests, NULL, NULL));
}
