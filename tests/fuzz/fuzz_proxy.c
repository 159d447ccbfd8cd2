/* fuzz_proxy: what a load balancer (or anyone who can reach a PROXY listener)
 * can send. proxy_parse() runs on the bytes with every accept mask; an
 * accepted header must keep the contract of proxy.h, verifying it with a fixed
 * key must not crash, and headers built from its addresses must parse back to
 * them and, signed, verify. The seeds are v1 and v2 headers of each kind. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[32] = "sockgate fuzz key, 32 bytes long";

static void die(const char *what, unsigned accept)
{
	fprintf(stderr, "fuzz_proxy: %s (accept mask %u)\n", what, accept);
	abort();
}

/* An address as the builders send it: IPv4-mapped IPv6 as IPv4. */
static void normal_form(const struct sockaddr_storage *ss, uint8_t out[19])
{
	memset(out, 0, 19);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		out[0] = 4;
		memcpy(out + 1, &sin->sin_addr, 4);
		memcpy(out + 17, &sin->sin_port, 2);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			out[0] = 4;
			memcpy(out + 1, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			out[0] = 6;
			memcpy(out + 1, &sin6->sin6_addr, 16);
		}
		memcpy(out + 17, &sin6->sin6_port, 2);
	}
}

static void check_same_addresses(const struct proxy_header *a, const struct proxy_header *b,
				 unsigned accept)
{
	uint8_t x[19], y[19];

	normal_form(&a->src, x);
	normal_form(&b->src, y);
	if (memcmp(x, y, sizeof(x)) != 0)
		die("rebuilt header has another source", accept);
	normal_form(&a->dst, x);
	normal_form(&b->dst, y);
	if (memcmp(x, y, sizeof(x)) != 0)
		die("rebuilt header has another destination", accept);
}

/* A TLV's value as a string for the builder, when it can be one. */
static const char *tlv_string(const struct proxy_header *h, uint8_t type, size_t max, char *buf)
{
	size_t len;
	const uint8_t *v = proxy_tlv(h, type, &len);

	if (v == NULL || len > max || memchr(v, '\0', len) != NULL)
		return NULL;
	memcpy(buf, v, len);
	buf[len] = '\0';
	return buf;
}

/* Headers built from h's addresses (and its TLVs where they fit) parse back. */
static void rebuild(const struct proxy_header *h, unsigned accept)
{
	char line[PROXY_V1_MAX_LEN + 1], user[PROXY_NAME_MAX + 1], uid[PROXY_UNIQUE_ID_MAX + 1];
	uint8_t bin[PROXY_V2_MAX];
	struct proxy_header back;
	struct proxy_identity id;
	struct errbuf why;
	struct proxy_out o = {
		.src = (const struct sockaddr *)&h->src,
		.dst = (const struct sockaddr *)&h->dst,
		.gateway = "fuzz",
		.key = fuzz_key,
		.key_len = sizeof(fuzz_key),
		.now = 1700000000,
	};
	ssize_t n = proxy_build_v1(o.src, o.dst, line, sizeof(line));

	if (n < 0 || proxy_parse(line, (size_t)n, PROXY_V1, &back, &why) != PROXY_OK ||
	    back.length != (size_t)n)
		die("a v1 line built from a parsed header does not parse", accept);
	if (back.family != AF_UNSPEC)
		check_same_addresses(h, &back, accept);

	o.user = tlv_string(h, PROXY_USER_TLV_DEFAULT, PROXY_NAME_MAX, user);
	o.unique_id = tlv_string(h, PROXY_TLV_UNIQUE_ID, PROXY_UNIQUE_ID_MAX, uid);
	n = proxy_build_v2(&o, bin, sizeof(bin));
	if (n < 0 || proxy_parse(bin, (size_t)n, PROXY_V2, &back, &why) != PROXY_OK ||
	    back.length != (size_t)n)
		die("a v2 header built from a parsed header does not parse", accept);
	check_same_addresses(h, &back, accept);
	if (proxy_verify(&back, fuzz_key, sizeof(fuzz_key), o.now, 0, 0, &id, &why) !=
	    PROXY_VERIFY_OK)
		die("a header signed from a parsed header does not verify", accept);
	if ((o.user == NULL) != !id.has_user || (o.user != NULL && strcmp(o.user, id.user) != 0))
		die("the verified user is not the one signed", accept);
}

static void check_ok(const uint8_t *data, size_t size, const struct proxy_header *h,
		     unsigned accept)
{
	struct proxy_header again;
	struct proxy_identity id;
	struct errbuf why;
	enum proxy_verdict v;

	if (h->length == 0 || h->length > size)
		die("PROXY_OK with a length outside the input", accept);
	if (!(h->version == 1 && (accept & PROXY_V1)) && !(h->version == 2 && (accept & PROXY_V2)))
		die("PROXY_OK for a version not accepted", accept);
	if (h->version == 1 && (h->length > PROXY_V1_MAX_LEN || h->n_tlvs != 0))
		die("v1 header too long, or with TLVs", accept);
	if (h->version == 2 && h->length > PROXY_V2_MAX)
		die("v2 header over PROXY_V2_MAX", accept);
	if (h->n_tlvs > PROXY_MAX_TLVS)
		die("too many TLVs", accept);
	for (size_t i = 0; i < h->n_tlvs; i++) {
		const struct proxy_tlv_entry *t = &h->tlvs[i];

		if (t->value < data + PROXY_V2_FIXED_LEN || t->value + t->len > data + h->length)
			die("TLV outside the header", accept);
		if (t->type == PROXY_TLV_NOOP)
			die("NOOP TLV kept", accept);
	}
	if (h->family != AF_UNSPEC && h->family != AF_INET && h->family != AF_INET6)
		die("unknown family", accept);
	if (h->family != AF_UNSPEC &&
	    (h->src.ss_family != h->family || h->dst.ss_family != h->family || h->local))
		die("addresses that do not match the family", accept);
	/* The header alone is the same header; one byte less is not one. */
	if (proxy_parse(data, h->length, accept, &again, &why) != PROXY_OK ||
	    again.length != h->length)
		die("the header alone does not parse as it did", accept);
	if (proxy_parse(data, h->length - 1, accept, &again, &why) != PROXY_NEED_MORE ||
	    again.length <= h->length - 1 || again.length > h->length)
		die("the header less its last byte is not NEED_MORE with a sane bound", accept);

	v = proxy_verify(h, fuzz_key, sizeof(fuzz_key), 1700000000, 0, 0, &id, &why);
	if (v > PROXY_VERIFY_MALFORMED || (v != PROXY_VERIFY_OK && why.msg[0] == '\0'))
		die("a verdict without a reason", accept);
	if (h->family == AF_INET || h->family == AF_INET6)
		rebuild(h, accept);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned masks[] = {PROXY_V1, PROXY_V2, PROXY_V1 | PROXY_V2};

	for (size_t m = 0; m < sizeof(masks) / sizeof(masks[0]); m++) {
		struct proxy_header h;
		struct errbuf why;
		enum proxy_result r;

		why.msg[0] = '\0';
		r = proxy_parse(data, size, masks[m], &h, &why);
		switch (r) {
		case PROXY_OK:
			check_ok(data, size, &h, masks[m]);
			break;
		case PROXY_NEED_MORE:
			if (h.length <= size || h.length > PROXY_V2_MAX)
				die("NEED_MORE without a bound beyond the input", masks[m]);
			break;
		case PROXY_INVALID:
			if (why.msg[0] == '\0')
				die("PROXY_INVALID without a reason", masks[m]);
			break;
		default:
			die("unknown result", masks[m]);
		}
	}
	return 0;
}
