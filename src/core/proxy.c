/* proxy: PROXY protocol headers, v1 and v2: parsed from untrusted bytes, built
 * for the upstream, signed and verified (see proxy.h; the signature's layout is
 * in man/sockgate-proxy.7). Nothing here does I/O but proxy_key_load(). */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "file.h"

static const uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V1_PREFIX        "PROXY "
#define V1_PREFIX_LEN    6
#define V1_MIN_LEN       15 /* "PROXY UNKNOWN\r\n" */
#define V1_ADDR_MAX      45 /* INET6_ADDRSTRLEN - 1: "ffff:...:255.255.255.255" */

#define V2_VER_CMD_PROXY 0x21
#define V2_FAM_TCP4      0x11
#define V2_FAM_TCP6      0x21
#define V2_BLOCK_MAX     36 /* the IPv6 address block */

/* The MAC input's label; the "1" changes with any change of the layout. */
#define SIG_LABEL     "sockgate-proxy-sig-1"
#define SIG_LABEL_LEN (sizeof(SIG_LABEL) - 1)
#define SIG_TS_LEN    8
#define SIG_MAC_LEN   32
/* label, ver_cmd, fam, block, T, four fields (presence, length, bytes), timestamp */
#define SIG_INPUT_MAX                                                                              \
	(SIG_LABEL_LEN + 2 + V2_BLOCK_MAX + 1 + 4 * 3 + PROXY_UNIQUE_ID_MAX + 3 * PROXY_NAME_MAX + \
	 SIG_TS_LEN)

/* The four fields the signature covers, in the MAC input's order. */
enum sig_field {
	FIELD_UNIQUE_ID,
	FIELD_USER,
	FIELD_GATEWAY,
	FIELD_TARGET,
	FIELD_COUNT,
};

static uint16_t load_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t load_be64(const uint8_t *p)
{
	return (uint64_t)load_be32(p) << 32 | load_be32(p + 4);
}

static void store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint32_t proxy_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* Bit by bit: headers are at most 1 KiB, and no table to get wrong. */
	crc = ~crc;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* ---- v1 ---------------------------------------------------------------------------------- */

static bool v1_addr_char(char c, int family)
{
	if (c >= '0' && c <= '9')
		return true;
	if (c == '.')
		return true;
	return family == AF_INET6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
}

/* An address field: complete, it must be what inet_pton() reads; cut short by
 * the end of the data, it must be able to become one. */
static bool v1_addr(const char *s, size_t n, bool complete, int family, struct sockaddr_storage *ss)
{
	char text[V1_ADDR_MAX + 1];

	if (n > (family == AF_INET ? 15u : (size_t)V1_ADDR_MAX))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v1_addr_char(s[i], family))
			return false;
	if (!complete)
		return true;
	memcpy(text, s, n);
	text[n] = '\0';
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
	}
}

/* A port field: 0-65535 in decimal, no leading zero ("0" itself is fine). */
static bool v1_port(const char *s, size_t n, bool complete, struct sockaddr_storage *ss)
{
	unsigned v = 0;

	if (n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	if (!complete)
		return true;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)v);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)v);
	return true;
}

/* The fields after "PROXY " (line: n bytes without the CRLF). complete: the
 * CRLF was seen; otherwise the data ends within the line, and what is there
 * must be a valid beginning of one. */
static enum proxy_result v1_fields(const char *line, size_t n, bool complete,
				   struct proxy_header *h, struct errbuf *why)
{
	static const char *const protos[] = {"TCP4", "TCP6", "UNKNOWN"};
	int family = AF_UNSPEC;
	size_t pos = V1_PREFIX_LEN;
	unsigned field;

	for (field = 1; pos <= n; field++) {
		const char *tok = line + pos, *sp = memchr(tok, ' ', n - pos);
		size_t tlen = sp != NULL ? (size_t)(sp - tok) : n - pos;
		/* A field is whole once a space or the CRLF follows it. */
		bool whole = sp != NULL || complete;

		if (tlen == 0 && !whole)
			break;
		if (tlen == 0) {
			errbuf_set(why, "empty field %u in PROXY v1 line (spaces must be single)",
				   field);
			return PROXY_INVALID;
		}
		if (field == 1) {
			size_t i;

			for (i = 0; i < 3; i++) {
				size_t plen = strlen(protos[i]);

				if (whole ? tlen == plen && memcmp(tok, protos[i], plen) == 0
					  : tlen <= plen && memcmp(tok, protos[i], tlen) == 0)
					break;
			}
			if (i == 3) {
				errbuf_set(why, "PROXY v1 line with a protocol other than TCP4, "
						"TCP6 or UNKNOWN");
				return PROXY_INVALID;
			}
			if (!whole)
				break;
			if (i == 2) {
				/* The spec: ignore whatever follows UNKNOWN. */
				h->family = AF_UNSPEC;
				return complete ? PROXY_OK : PROXY_NEED_MORE;
			}
			family = i == 0 ? AF_INET : AF_INET6;
		} else if (field <= 3) {
			if (!v1_addr(tok, tlen, whole, family, field == 2 ? &h->src : &h->dst)) {
				errbuf_set(why, "bad address in PROXY v1 line");
				return PROXY_INVALID;
			}
		} else if (field <= 5) {
			if (!v1_port(tok, tlen, whole, field == 4 ? &h->src : &h->dst)) {
				errbuf_set(why, "bad port in PROXY v1 line");
				return PROXY_INVALID;
			}
		} else {
			errbuf_set(why, "more than 6 fields in PROXY v1 line");
			return PROXY_INVALID;
		}
		if (sp == NULL)
			break;
		pos += tlen + 1;
	}
	if (!complete)
		return PROXY_NEED_MORE;
	if (field != 5) {
		errbuf_set(why, "PROXY v1 line with %u fields; TCP4 and TCP6 need 6", field + 1);
		return PROXY_INVALID;
	}
	h->family = family;
	return PROXY_OK;
}

static enum proxy_result v1_parse(const uint8_t *p, size_t len, struct proxy_header *h,
				  struct errbuf *why)
{
	size_t scan = len < PROXY_V1_MAX_LEN ? len : PROXY_V1_MAX_LEN;
	enum proxy_result r;

	/* A lone CR or LF ends nothing and belongs to no field: refused anywhere. */
	for (size_t i = 0; i < scan; i++) {
		if (p[i] == '\n') {
			errbuf_set(why, "LF without CR in PROXY v1 line");
			return PROXY_INVALID;
		}
		if (p[i] != '\r')
			continue;
		if (i + 1 == PROXY_V1_MAX_LEN)
			break;
		if (i + 1 == len) {
			r = v1_fields((const char *)p, i, false, h, why);
			h->length = len + 1;
			return r;
		}
		if (p[i + 1] != '\n') {
			errbuf_set(why, "CR without LF in PROXY v1 line");
			return PROXY_INVALID;
		}
		r = v1_fields((const char *)p, i, true, h, why);
		if (r == PROXY_OK) {
			h->version = 1;
			h->length = i + 2;
		}
		return r;
	}
	if (len >= PROXY_V1_MAX_LEN) {
		errbuf_set(why, "PROXY v1 line longer than %d bytes", PROXY_V1_MAX_LEN);
		return PROXY_INVALID;
	}
	r = v1_fields((const char *)p, len, false, h, why);
	h->length = len + 1 > V1_MIN_LEN ? len + 1 : V1_MIN_LEN;
	return r;
}

/* ---- v2 ---------------------------------------------------------------------------------- */

/* The address block's size for a family-and-transport byte of the spec, with
 * *family the socket family this module reads (AF_UNSPEC: not read); -1 for a
 * byte the spec does not define. */
static int v2_block_len(uint8_t fam, int *family)
{
	*family = AF_UNSPEC;
	switch (fam) {
	case 0x00:
		return 0;
	case V2_FAM_TCP4:
		*family = AF_INET;
		return 12;
	case 0x12:
		return 12;
	case V2_FAM_TCP6:
		*family = AF_INET6;
		return 36;
	case 0x22:
		return 36;
	case 0x31:
	case 0x32:
		return 216;
	default:
		return -1;
	}
}

/* The fixed part's checks that need only the bytes that are there. */
static enum proxy_result v2_check_fixed(const uint8_t *p, size_t len, struct errbuf *why)
{
	int family;

	if (len > 12 && (p[12] >> 4) != 2) {
		errbuf_set(why, "PROXY v2 signature with version %u", p[12] >> 4);
		return PROXY_INVALID;
	}
	if (len > 12 && (p[12] & 0x0f) > 1) {
		errbuf_set(why, "PROXY v2 command %u is neither LOCAL nor PROXY", p[12] & 0x0f);
		return PROXY_INVALID;
	}
	/* LOCAL's family is ignored, whatever it says (the spec). */
	if (len > 13 && (p[12] & 0x0f) == 1 && v2_block_len(p[13], &family) < 0) {
		errbuf_set(why, "PROXY v2 family and transport 0x%02x are not in the spec", p[13]);
		return PROXY_INVALID;
	}
	return PROXY_OK;
}

static void v2_addresses(const uint8_t *block, int family, struct proxy_header *h)
{
	h->family = family;
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&h->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, block, 4);
		memcpy(&d->sin_addr, block + 4, 4);
		memcpy(&s->sin_port, block + 8, 2);
		memcpy(&d->sin_port, block + 10, 2);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, block, 16);
		memcpy(&d->sin6_addr, block + 16, 16);
		memcpy(&s->sin6_port, block + 32, 2);
		memcpy(&d->sin6_port, block + 34, 2);
	}
}

/* Walks the TLVs in p[off..end): each must lie whole inside, and they must end
 * exactly at end. */
static enum proxy_result v2_tlvs(const uint8_t *p, size_t off, size_t end, struct proxy_header *h,
				 struct errbuf *why)
{
	const uint8_t *crc = NULL;
	uint32_t want, got;

	while (off < end) {
		uint8_t type;
		uint16_t tlen;

		if (end - off < 3) {
			errbuf_set(why, "PROXY v2 TLV cut short at byte %zu of %zu", off, end);
			return PROXY_INVALID;
		}
		type = p[off];
		tlen = load_be16(p + off + 1);
		if (tlen > end - off - 3) {
			errbuf_set(why, "PROXY v2 TLV 0x%02x of %u bytes runs past the header",
				   type, tlen);
			return PROXY_INVALID;
		}
		switch (type) {
		case PROXY_TLV_NOOP:
			off += 3 + (size_t)tlen;
			continue;
		case PROXY_TLV_CRC32C:
			if (tlen != 4 || crc != NULL) {
				errbuf_set(why, "PROXY v2 CRC32C TLV %s",
					   crc != NULL ? "twice" : "not of 4 bytes");
				return PROXY_INVALID;
			}
			crc = p + off + 3;
			break;
		case PROXY_TLV_UNIQUE_ID:
			if (tlen > PROXY_UNIQUE_ID_MAX) {
				errbuf_set(why, "PROXY v2 unique ID of %u bytes (at most %d)", tlen,
					   PROXY_UNIQUE_ID_MAX);
				return PROXY_INVALID;
			}
			break;
		case PROXY_TLV_SSL:
			/* client flags and verify result; the sub-TLVs are not read */
			if (tlen < 5) {
				errbuf_set(why, "PROXY v2 SSL TLV of %u bytes (at least 5)", tlen);
				return PROXY_INVALID;
			}
			break;
		default:
			break;
		}
		if (h->n_tlvs == PROXY_MAX_TLVS) {
			errbuf_set(why, "more than %d TLVs in a PROXY v2 header", PROXY_MAX_TLVS);
			return PROXY_INVALID;
		}
		h->tlvs[h->n_tlvs].type = type;
		h->tlvs[h->n_tlvs].len = tlen;
		h->tlvs[h->n_tlvs].value = p + off + 3;
		h->n_tlvs++;
		off += 3 + (size_t)tlen;
	}
	if (crc == NULL)
		return PROXY_OK;
	/* Over the whole header with the checksum's own bytes as zeros. */
	want = load_be32(crc);
	got = proxy_crc32c(0, p, (size_t)(crc - p));
	got = proxy_crc32c(got, "\0\0\0\0", 4);
	got = proxy_crc32c(got, crc + 4, end - (size_t)(crc + 4 - p));
	if (got != want) {
		errbuf_set(why, "PROXY v2 CRC32C mismatch (the header says %08x, its bytes %08x)",
			   want, got);
		return PROXY_INVALID;
	}
	return PROXY_OK;
}

static enum proxy_result v2_parse(const uint8_t *p, size_t len, struct proxy_header *h,
				  struct errbuf *why)
{
	size_t total;
	int block, family;

	if (v2_check_fixed(p, len, why) != PROXY_OK)
		return PROXY_INVALID;
	if (len < PROXY_V2_FIXED_LEN) {
		h->length = PROXY_V2_FIXED_LEN;
		return PROXY_NEED_MORE;
	}
	total = PROXY_V2_FIXED_LEN + (size_t)load_be16(p + 14);
	if (total > PROXY_V2_MAX) {
		errbuf_set(why, "PROXY v2 header of %zu bytes (at most %d accepted)", total,
			   PROXY_V2_MAX);
		return PROXY_INVALID;
	}
	h->length = total;
	if (len < total)
		return PROXY_NEED_MORE;
	h->version = 2;
	/* LOCAL and UNSPEC: the spec says to ignore the block, so its bytes are
	 * skipped unread, whatever they hold. */
	if ((p[12] & 0x0f) == 0) {
		h->local = true;
		return PROXY_OK;
	}
	if (p[13] == 0x00)
		return PROXY_OK;
	block = v2_block_len(p[13], &family);
	if (total - PROXY_V2_FIXED_LEN < (size_t)block) {
		errbuf_set(why, "PROXY v2 address block of %zu bytes; family 0x%02x needs %d",
			   total - PROXY_V2_FIXED_LEN, p[13], block);
		return PROXY_INVALID;
	}
	if (family == AF_UNSPEC)
		h->family_unsupported = true;
	else
		v2_addresses(p + PROXY_V2_FIXED_LEN, family, h);
	return v2_tlvs(p, PROXY_V2_FIXED_LEN + (size_t)block, total, h, why);
}

enum proxy_result proxy_parse(const void *buf, size_t len, unsigned accept, struct proxy_header *h,
			      struct errbuf *why)
{
	const uint8_t *p = buf;
	size_t n;
	enum proxy_result r;

	memset(h, 0, sizeof(*h));
	h->family = AF_UNSPEC;
	if ((accept & (PROXY_V1 | PROXY_V2)) == 0) {
		errbuf_set(why, "no PROXY protocol version accepted");
		return PROXY_INVALID;
	}
	if (len == 0) {
		h->length = (accept & PROXY_V1) ? V1_MIN_LEN : PROXY_V2_FIXED_LEN;
		return PROXY_NEED_MORE;
	}
	if (p[0] == 'P') {
		n = len < V1_PREFIX_LEN ? len : V1_PREFIX_LEN;
		if (memcmp(p, V1_PREFIX, n) != 0)
			goto not_proxy;
		if (!(accept & PROXY_V1)) {
			errbuf_set(why, "v1 header where only v2 is accepted");
			return PROXY_INVALID;
		}
		if (len < V1_PREFIX_LEN) {
			h->length = V1_MIN_LEN;
			return PROXY_NEED_MORE;
		}
		r = v1_parse(p, len, h, why);
	} else if (p[0] == v2_signature[0]) {
		n = len < sizeof(v2_signature) ? len : sizeof(v2_signature);
		if (memcmp(p, v2_signature, n) != 0)
			goto not_proxy;
		if (!(accept & PROXY_V2)) {
			errbuf_set(why, "v2 header where only v1 is accepted");
			return PROXY_INVALID;
		}
		r = v2_parse(p, len, h, why);
	} else {
		goto not_proxy;
	}
	if (r == PROXY_INVALID) {
		/* Nothing half-filled for a caller that looks anyway. */
		memset(h, 0, sizeof(*h));
		h->family = AF_UNSPEC;
	}
	return r;
not_proxy:
	errbuf_set(why, "not a PROXY header");
	return PROXY_INVALID;
}

const uint8_t *proxy_tlv(const struct proxy_header *h, uint8_t type, size_t *len)
{
	for (size_t i = 0; i < h->n_tlvs && i < PROXY_MAX_TLVS; i++) {
		if (h->tlvs[i].type == type) {
			if (len != NULL)
				*len = h->tlvs[i].len;
			return h->tlvs[i].value;
		}
	}
	if (len != NULL)
		*len = 0;
	return NULL;
}

/* ---- building ---------------------------------------------------------------------------- */

/* An address as it goes on the wire: family, 4 or 16 bytes, port in network order. */
struct wire_addr {
	int family;
	uint8_t addr[16];
	uint16_t port;
};

/* unmap: an IPv4-mapped IPv6 address becomes IPv4, as the builders send it; the
 * verifier keeps what the header said. */
static bool wire_from(const struct sockaddr *sa, bool unmap, struct wire_addr *w)
{
	if (sa == NULL)
		return false;
	memset(w, 0, sizeof(*w));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		w->family = AF_INET;
		memcpy(w->addr, &sin->sin_addr, 4);
		w->port = sin->sin_port;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		w->port = sin6->sin6_port;
		if (unmap && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			w->family = AF_INET;
			memcpy(w->addr, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			w->family = AF_INET6;
			memcpy(w->addr, &sin6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

static void wire_map_v6(struct wire_addr *w)
{
	if (w->family != AF_INET)
		return;
	memmove(w->addr + 12, w->addr, 4);
	memset(w->addr, 0, 10);
	w->addr[10] = w->addr[11] = 0xff;
	w->family = AF_INET6;
}

/* The v2 address block of two addresses of one family; its length. */
static size_t wire_block(const struct wire_addr *s, const struct wire_addr *d, uint8_t *out)
{
	size_t alen = s->family == AF_INET ? 4 : 16;

	memcpy(out, s->addr, alen);
	memcpy(out + alen, d->addr, alen);
	memcpy(out + 2 * alen, &s->port, 2);
	memcpy(out + 2 * alen + 2, &d->port, 2);
	return 2 * alen + 4;
}

ssize_t proxy_build_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf,
		       size_t cap)
{
	struct wire_addr s, d;
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	int n;

	if (!wire_from(src, true, &s) || !wire_from(dst, true, &d) || s.family != d.family) {
		n = snprintf(buf, cap, "PROXY UNKNOWN\r\n");
	} else {
		inet_ntop(s.family, s.addr, sa, sizeof(sa));
		inet_ntop(d.family, d.addr, da, sizeof(da));
		n = snprintf(buf, cap, "PROXY %s %s %s %u %u\r\n",
			     s.family == AF_INET ? "TCP4" : "TCP6", sa, da, ntohs(s.port),
			     ntohs(d.port));
	}
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

/* A field of the MAC input: its TLV's bytes, or absent. */
struct sig_value {
	const uint8_t *p;
	size_t len;
	bool present;
};

/* HMAC-SHA-256 over the canonical input (sockgate-proxy(7), "SIGNATURE"):
 * label, ver_cmd, fam, address block, T, the four fields, timestamp. */
static int sig_mac(uint8_t fam, const uint8_t *block, size_t block_len, unsigned user_tlv,
		   const struct sig_value f[FIELD_COUNT], uint64_t ts, const uint8_t *key,
		   size_t key_len, uint8_t mac[SIG_MAC_LEN])
{
	uint8_t in[SIG_INPUT_MAX];
	unsigned mac_len = 0;
	size_t n = 0;

	if (block_len > V2_BLOCK_MAX || key_len > PROXY_KEY_MAX)
		return -1;
	memcpy(in, SIG_LABEL, SIG_LABEL_LEN);
	n = SIG_LABEL_LEN;
	in[n++] = V2_VER_CMD_PROXY;
	in[n++] = fam;
	memcpy(in + n, block, block_len);
	n += block_len;
	in[n++] = (uint8_t)user_tlv;
	for (int i = 0; i < FIELD_COUNT; i++) {
		size_t max = i == FIELD_UNIQUE_ID ? PROXY_UNIQUE_ID_MAX : PROXY_NAME_MAX;

		if (f[i].len > max)
			return -1;
		in[n++] = f[i].present ? 1 : 0;
		store_be16(in + n, (uint16_t)f[i].len);
		n += 2;
		if (f[i].len > 0)
			memcpy(in + n, f[i].p, f[i].len);
		n += f[i].len;
	}
	store_be64(in + n, ts);
	n += SIG_TS_LEN;
	if (HMAC(EVP_sha256(), key, (int)key_len, in, n, mac, &mac_len) == NULL ||
	    mac_len != SIG_MAC_LEN)
		return -1;
	return 0;
}

static uint8_t *put_tlv(uint8_t *p, uint8_t type, const void *value, size_t len)
{
	p[0] = type;
	store_be16(p + 1, (uint16_t)len);
	if (len > 0)
		memcpy(p + 3, value, len);
	return p + 3 + len;
}

static bool field_from(const char *s, size_t max, struct sig_value *v)
{
	v->present = s != NULL;
	v->p = (const uint8_t *)s;
	v->len = s != NULL ? strnlen(s, max + 1) : 0;
	return v->len <= max;
}

ssize_t proxy_build_v2(const struct proxy_out *o, uint8_t *buf, size_t cap)
{
	static const uint8_t tlv_offset[FIELD_COUNT] = {0, 0, 1, 3}; /* from T; unique: 0x05 */
	struct sig_value f[FIELD_COUNT];
	struct wire_addr s, d;
	uint8_t block[V2_BLOCK_MAX], mac[SIG_MAC_LEN], *p;
	unsigned t = o->user_tlv != 0 ? o->user_tlv : PROXY_USER_TLV_DEFAULT;
	size_t block_len, total;
	uint8_t fam;

	if (!wire_from(o->src, true, &s) || !wire_from(o->dst, true, &d))
		return -1;
	if (t < PROXY_USER_TLV_MIN || t > PROXY_USER_TLV_MAX)
		return -1;
	if (o->key != NULL && (o->key_len < PROXY_KEY_MIN || o->key_len > PROXY_KEY_MAX))
		return -1;
	/* One family for both: IPv4 beside IPv6 travels as IPv4-mapped IPv6. */
	if (s.family != d.family) {
		wire_map_v6(&s);
		wire_map_v6(&d);
	}
	fam = s.family == AF_INET ? V2_FAM_TCP4 : V2_FAM_TCP6;
	block_len = wire_block(&s, &d, block);
	if (!field_from(o->unique_id, PROXY_UNIQUE_ID_MAX, &f[FIELD_UNIQUE_ID]) ||
	    !field_from(o->user, PROXY_NAME_MAX, &f[FIELD_USER]) ||
	    !field_from(o->gateway, PROXY_NAME_MAX, &f[FIELD_GATEWAY]) ||
	    !field_from(o->target, PROXY_NAME_MAX, &f[FIELD_TARGET]))
		return -1;
	total = PROXY_V2_FIXED_LEN + block_len;
	for (int i = 0; i < FIELD_COUNT; i++)
		if (f[i].present)
			total += 3 + f[i].len;
	if (o->key != NULL)
		total += 3 + PROXY_SIG_LEN;
	if (total > cap || total > PROXY_V2_MAX)
		return -1;

	memcpy(buf, v2_signature, sizeof(v2_signature));
	buf[12] = V2_VER_CMD_PROXY;
	buf[13] = fam;
	store_be16(buf + 14, (uint16_t)(total - PROXY_V2_FIXED_LEN));
	memcpy(buf + PROXY_V2_FIXED_LEN, block, block_len);
	p = buf + PROXY_V2_FIXED_LEN + block_len;
	for (int i = 0; i < FIELD_COUNT; i++) {
		uint8_t type =
			i == FIELD_UNIQUE_ID ? PROXY_TLV_UNIQUE_ID : (uint8_t)(t + tlv_offset[i]);

		if (f[i].present)
			p = put_tlv(p, type, f[i].p, f[i].len);
	}
	if (o->key != NULL) {
		uint8_t sig[PROXY_SIG_LEN];

		if (sig_mac(fam, block, block_len, t, f, o->now, o->key, o->key_len, mac) < 0)
			return -1;
		store_be64(sig, o->now);
		memcpy(sig + SIG_TS_LEN, mac, SIG_MAC_LEN);
		p = put_tlv(p, (uint8_t)(t + 2), sig, sizeof(sig));
	}
	return (ssize_t)(p - buf);
}

/* ---- keys -------------------------------------------------------------------------------- */

int proxy_key_load(const char *path, uid_t owner, uint8_t *key, size_t cap, size_t *len,
		   struct errbuf *err)
{
	struct stat st;
	size_t n = 0;
	char *text = file_read(path, PROXY_KEY_MAX, &st, &n, err);
	int rc = -1;

	if (text == NULL)
		return -1;
	/* The checks of a credentials file: whoever can change the key can forge
	 * identities. */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		errbuf_set(err,
			   "%s: group or others can write it (mode %04o); run chmod go-w on it",
			   path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_uid != 0 && st.st_uid != owner) {
		errbuf_set(err, "%s: owned by uid %u; expected root or uid %u", path,
			   (unsigned)st.st_uid, (unsigned)owner);
		goto out;
	}
	if (n < PROXY_KEY_MIN) {
		errbuf_set(err,
			   "%s: a key of %zu bytes; at least %d are needed "
			   "(head -c 32 /dev/urandom makes one)",
			   path, n, PROXY_KEY_MIN);
		goto out;
	}
	if (n > cap) {
		errbuf_set(err, "%s: a key of %zu bytes; room for %zu", path, n, cap);
		goto out;
	}
	memcpy(key, text, n);
	*len = n;
	rc = 0;
out:
	file_free(text, n);
	return rc;
}

/* ---- verifying --------------------------------------------------------------------------- */

const char *proxy_verdict_str(enum proxy_verdict v)
{
	switch (v) {
	case PROXY_VERIFY_OK:
		return "verified";
	case PROXY_VERIFY_NO_SIGNATURE:
		return "no signature";
	case PROXY_VERIFY_BAD_SIGNATURE:
		return "bad signature";
	case PROXY_VERIFY_TOO_OLD:
		return "too old";
	case PROXY_VERIFY_FUTURE:
		return "from the future";
	case PROXY_VERIFY_MALFORMED:
		return "malformed";
	}
	return "unknown verdict";
}

/* The only TLV of this type, in *v; false when it appears more than once. */
static bool sole_tlv(const struct proxy_header *h, uint8_t type, struct sig_value *v)
{
	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < h->n_tlvs && i < PROXY_MAX_TLVS; i++) {
		if (h->tlvs[i].type != type)
			continue;
		if (v->present)
			return false;
		v->present = true;
		v->p = h->tlvs[i].value;
		v->len = h->tlvs[i].len;
	}
	return true;
}

static void copy_field(const struct sig_value *v, char *out, bool *has)
{
	*has = v->present;
	if (v->len > 0)
		memcpy(out, v->p, v->len);
	out[v->len] = '\0';
}

enum proxy_verdict proxy_verify(const struct proxy_header *h, const uint8_t *key, size_t key_len,
				uint64_t now, unsigned max_age_s, unsigned user_tlv,
				struct proxy_identity *id, struct errbuf *why)
{
	static const uint8_t tlv_offset[FIELD_COUNT] = {0, 0, 1, 3};
	struct sig_value f[FIELD_COUNT], sig;
	struct wire_addr s, d;
	uint8_t block[V2_BLOCK_MAX], mac[SIG_MAC_LEN];
	unsigned t = user_tlv != 0 ? user_tlv : PROXY_USER_TLV_DEFAULT;
	unsigned max_age = max_age_s != 0 ? max_age_s : PROXY_MAX_AGE_DEFAULT;
	size_t block_len;
	uint64_t ts;

	if (id != NULL)
		memset(id, 0, sizeof(*id));
	if (t < PROXY_USER_TLV_MIN || t > PROXY_USER_TLV_MAX) {
		errbuf_set(why, "malformed: TLV base 0x%02x is outside 0x%02x-0x%02x", t,
			   PROXY_USER_TLV_MIN, PROXY_USER_TLV_MAX);
		return PROXY_VERIFY_MALFORMED;
	}
	if (h->version != 2) {
		errbuf_set(why, "no signature (a PROXY v%u header cannot carry one)", h->version);
		return PROXY_VERIFY_NO_SIGNATURE;
	}
	if (!sole_tlv(h, (uint8_t)(t + 2), &sig)) {
		errbuf_set(why, "malformed: two signature TLVs (0x%02x)", t + 2);
		return PROXY_VERIFY_MALFORMED;
	}
	if (!sig.present) {
		errbuf_set(why, "no signature (no TLV 0x%02x)", t + 2);
		return PROXY_VERIFY_NO_SIGNATURE;
	}
	if (sig.len != PROXY_SIG_LEN) {
		errbuf_set(why, "malformed: signature TLV of %zu bytes, not %d", sig.len,
			   PROXY_SIG_LEN);
		return PROXY_VERIFY_MALFORMED;
	}
	/* Each signed field must be there once at most: with two, the MAC would
	 * vouch for one while a careless reader took the other. */
	for (int i = 0; i < FIELD_COUNT; i++) {
		uint8_t type =
			i == FIELD_UNIQUE_ID ? PROXY_TLV_UNIQUE_ID : (uint8_t)(t + tlv_offset[i]);
		size_t max = i == FIELD_UNIQUE_ID ? PROXY_UNIQUE_ID_MAX : PROXY_NAME_MAX;

		if (!sole_tlv(h, type, &f[i])) {
			errbuf_set(why, "malformed: TLV 0x%02x appears twice", type);
			return PROXY_VERIFY_MALFORMED;
		}
		if (f[i].len > max || (f[i].len > 0 && memchr(f[i].p, '\0', f[i].len) != NULL)) {
			errbuf_set(why,
				   "malformed: TLV 0x%02x is longer than %zu bytes or holds "
				   "a NUL byte",
				   type, max);
			return PROXY_VERIFY_MALFORMED;
		}
	}
	if (h->local || (h->family != AF_INET && h->family != AF_INET6) ||
	    !wire_from((const struct sockaddr *)&h->src, false, &s) ||
	    !wire_from((const struct sockaddr *)&h->dst, false, &d) || s.family != d.family) {
		errbuf_set(why, "malformed: a signature on a header without TCP addresses");
		return PROXY_VERIFY_MALFORMED;
	}
	if (key == NULL || key_len < PROXY_KEY_MIN || key_len > PROXY_KEY_MAX) {
		errbuf_set(why, "bad signature: the key must have %d to %d bytes", PROXY_KEY_MIN,
			   PROXY_KEY_MAX);
		return PROXY_VERIFY_BAD_SIGNATURE;
	}
	block_len = wire_block(&s, &d, block);
	ts = load_be64(sig.p);
	if (sig_mac(h->family == AF_INET ? V2_FAM_TCP4 : V2_FAM_TCP6, block, block_len, t, f, ts,
		    key, key_len, mac) < 0) {
		errbuf_set(why, "bad signature: cannot compute HMAC-SHA-256");
		return PROXY_VERIFY_BAD_SIGNATURE;
	}
	if (CRYPTO_memcmp(mac, sig.p + SIG_TS_LEN, SIG_MAC_LEN) != 0) {
		errbuf_set(why, "bad signature (another key, or the header was altered)");
		return PROXY_VERIFY_BAD_SIGNATURE;
	}
	/* Only now is the timestamp the gateway's. */
	if (ts > now && ts - now > PROXY_FUTURE_SKEW_S) {
		errbuf_set(why, "from the future: signed %llu s ahead of this clock (at most %d)",
			   (unsigned long long)(ts - now), PROXY_FUTURE_SKEW_S);
		return PROXY_VERIFY_FUTURE;
	}
	if (now > ts && now - ts > max_age) {
		errbuf_set(why, "too old: signed %llu s ago (at most %u)",
			   (unsigned long long)(now - ts), max_age);
		return PROXY_VERIFY_TOO_OLD;
	}
	if (id != NULL) {
		copy_field(&f[FIELD_USER], id->user, &id->has_user);
		copy_field(&f[FIELD_GATEWAY], id->gateway, &id->has_gateway);
		copy_field(&f[FIELD_TARGET], id->target, &id->has_target);
		copy_field(&f[FIELD_UNIQUE_ID], id->unique_id, &id->has_unique_id);
		id->signed_at = ts;
	}
	return PROXY_VERIFY_OK;
}
