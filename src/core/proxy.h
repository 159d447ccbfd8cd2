/* proxy: the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) as
 * pure functions: parsing a header a load balancer sent, building the one sockgate
 * sends its upstream, and signing and verifying the identity TLVs in it. */
#ifndef SOCKGATE_PROXY_H
#define SOCKGATE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "errbuf.h"

/* Which versions proxy_parse() accepts: a mask of these. */
#define PROXY_V1           0x1u
#define PROXY_V2           0x2u

#define PROXY_V1_MAX_LEN   107  /* the spec's longest line, CRLF included */
#define PROXY_V2_FIXED_LEN 16   /* signature, version and command, family, length */
#define PROXY_V2_MAX       1024 /* the largest v2 header accepted, TLVs included */
#define PROXY_MAX_TLVS     16   /* TLVs kept per header (PP2_TYPE_NOOP not counted) */

/* TLV types of the spec that this module knows. */
#define PROXY_TLV_ALPN      0x01
#define PROXY_TLV_AUTHORITY 0x02
#define PROXY_TLV_CRC32C    0x03
#define PROXY_TLV_NOOP      0x04
#define PROXY_TLV_UNIQUE_ID 0x05
#define PROXY_TLV_SSL       0x20
#define PROXY_TLV_NETNS     0x30

/* sockgate's TLVs are four consecutive types of the application range
 * (0xE0-0xEF), from a base T: T user, T+1 gateway, T+2 signature, T+3 target. */
#define PROXY_USER_TLV_DEFAULT 0xE0
#define PROXY_USER_TLV_MIN     0xE0
#define PROXY_USER_TLV_MAX     0xEC /* 0xEF - 3 */

#define PROXY_UNIQUE_ID_MAX    128 /* bytes, as the spec allows */
#define PROXY_NAME_MAX         255 /* bytes of a user, gateway or target name */
#define PROXY_KEY_MIN          32  /* bytes of a signing key */
#define PROXY_KEY_MAX          1024
#define PROXY_SIG_LEN          40 /* 8-byte timestamp + HMAC-SHA-256 */
#define PROXY_MAX_AGE_DEFAULT  60
#define PROXY_FUTURE_SKEW_S    5 /* seconds a timestamp may be ahead of the verifier's clock */

enum proxy_result {
	PROXY_OK = 0,    /* the header is complete and valid; see proxy_header.length */
	PROXY_NEED_MORE, /* a valid prefix: read more (at least proxy_header.length in all) */
	PROXY_INVALID,   /* not a header that is accepted; why says what */
};

/* One TLV of a v2 header; value points into the buffer given to proxy_parse(). */
struct proxy_tlv_entry {
	uint8_t type;
	uint16_t len;
	const uint8_t *value;
};

struct proxy_header {
	size_t length;           /* PROXY_OK: the header's bytes, to consume exactly;
				    PROXY_NEED_MORE: bytes needed at least in all (more than given) */
	unsigned version;        /* 1 or 2 */
	bool local;              /* v2 LOCAL (a health check): no addresses, use the connection's */
	bool family_unsupported; /* v2 AF_UNIX or DGRAM: no addresses, TLVs kept */
	/* AF_INET or AF_INET6 with src and dst filled (ports in network order, as in a
	 * sockaddr); AF_UNSPEC for v1 UNKNOWN, v2 LOCAL, UNSPEC or an unsupported family. */
	int family;
	struct sockaddr_storage src, dst;
	size_t n_tlvs; /* v2 only, in header order; PP2_TYPE_NOOP is skipped */
	struct proxy_tlv_entry tlvs[PROXY_MAX_TLVS];
};

/* Parses the header at the start of buf (len bytes, which may go on with the
 * connection's data: only the header is looked at). accept is PROXY_V1,
 * PROXY_V2 or both. Never reads past len. On PROXY_INVALID, why (may be NULL)
 * says what is wrong ("not a PROXY header", "PROXY v1 line longer than 107
 * bytes", ...). v1 is strict: single spaces, addresses inet_pton() accepts,
 * ports 0-65535 without leading zeros, anything up to the CRLF after UNKNOWN.
 * v2: LOCAL and UNSPEC carry no addresses and their block is skipped (TLVs
 * included); AF_INET/AF_INET6 STREAM are read; AF_UNIX and DGRAM are accepted
 * with family_unsupported set. TLVs must fill the rest of the header exactly;
 * a CRC32C TLV is checked, a UNIQUE_ID longer than 128 bytes is refused. */
enum proxy_result proxy_parse(const void *buf, size_t len, unsigned accept, struct proxy_header *h,
			      struct errbuf *why);

/* The value of h's first TLV of this type (its length in *len if len is not
 * NULL), or NULL when there is none. */
const uint8_t *proxy_tlv(const struct proxy_header *h, uint8_t type, size_t *len);

/* A v1 line for src and dst, NUL-terminated, into buf: "PROXY TCP4 ..." when
 * both are IPv4 (IPv4-mapped IPv6 counts as IPv4), "PROXY TCP6 ..." when both
 * are IPv6, else "PROXY UNKNOWN\r\n". Returns the line's length without the NUL,
 * or -1 when cap is too small (PROXY_V1_MAX_LEN + 1 always suffices). */
ssize_t proxy_build_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf,
		       size_t cap);

/* What sockgate tells its upstream in a v2 header. Strings are NUL-terminated;
 * NULL omits a TLV (an empty string is sent as an empty TLV). */
struct proxy_out {
	const struct sockaddr *src, *dst; /* AF_INET or AF_INET6 each; mixed: sent as IPv6 */
	const char *unique_id;            /* PP2_TYPE_UNIQUE_ID, at most 128 bytes */
	const char *user, *gateway;       /* at most PROXY_NAME_MAX bytes each */
	const char *target;               /* the upstream, or NULL */
	unsigned user_tlv;                /* T, PROXY_USER_TLV_MIN..MAX; 0: the default */
	const uint8_t *key;               /* NULL: no signature TLV */
	size_t key_len;                   /* at least PROXY_KEY_MIN with a key */
	uint64_t now;                     /* Unix seconds, for the signature */
};

/* A v2 PROXY header (command PROXY, TCP) with o's TLVs into buf. Returns its
 * length (at most PROXY_V2_MAX), or -1 when cap is too small, an address is
 * missing or not IPv4/IPv6, a string is too long, user_tlv is out of range, the
 * key is too short, or HMAC fails. The signature's layout is in
 * sockgate-proxy(7). */
ssize_t proxy_build_v2(const struct proxy_out *o, uint8_t *buf, size_t cap);

/* Reads a signing key: the file's bytes as they are, PROXY_KEY_MIN to
 * PROXY_KEY_MAX of them (head -c 32 /dev/urandom makes one). As with a
 * credentials file, group and others may not write it and its owner is root or
 * owner. Copies the key into key (cap bytes) and its size into *len. Returns 0,
 * or -1 with "PATH: ..." in err. Wipe the key with explicit_bzero() after use. */
int proxy_key_load(const char *path, uid_t owner, uint8_t *key, size_t cap, size_t *len,
		   struct errbuf *err);

enum proxy_verdict {
	PROXY_VERIFY_OK = 0,
	PROXY_VERIFY_NO_SIGNATURE,  /* no signature TLV: not from a gateway with a key */
	PROXY_VERIFY_BAD_SIGNATURE, /* the MAC does not match: another key, or altered */
	PROXY_VERIFY_TOO_OLD,       /* signed more than max_age_s ago: a replay, or a slow clock */
	PROXY_VERIFY_FUTURE,        /* signed more than PROXY_FUTURE_SKEW_S ahead */
	PROXY_VERIFY_MALFORMED,     /* a sockgate TLV twice, too long, with a NUL byte, ... */
};

/* What a verified header says; absent TLVs are empty strings with has_* false. */
struct proxy_identity {
	char user[PROXY_NAME_MAX + 1];
	char gateway[PROXY_NAME_MAX + 1];
	char target[PROXY_NAME_MAX + 1];
	char unique_id[PROXY_UNIQUE_ID_MAX + 1];
	bool has_user, has_gateway, has_target, has_unique_id;
	uint64_t signed_at; /* Unix seconds, from the signature */
};

/* For backend authors: checks that h (a v2 header proxy_parse() accepted)
 * carries a signature by key (key_len bytes) over its addresses and sockgate's
 * TLVs (types from user_tlv, 0 for the default), signed no more than max_age_s
 * seconds (0 for PROXY_MAX_AGE_DEFAULT) before now and not more than
 * PROXY_FUTURE_SKEW_S after it. On PROXY_VERIFY_OK fills id (may be NULL);
 * otherwise why (may be NULL) says what failed: "no signature", "bad signature",
 * "too old", "from the future" or "malformed", with details. The MAC comparison
 * takes constant time. A signature proves the gateway vouched for this header;
 * it is no proof that the bytes after it come from that user (sockgate-proxy(7)). */
enum proxy_verdict proxy_verify(const struct proxy_header *h, const uint8_t *key, size_t key_len,
				uint64_t now, unsigned max_age_s, unsigned user_tlv,
				struct proxy_identity *id, struct errbuf *why);

/* "no signature", "bad signature", ... for a verdict. */
const char *proxy_verdict_str(enum proxy_verdict v);

/* CRC32C (Castagnoli, as in RFC 4960) of len bytes, continuing crc (0 to start). */
uint32_t proxy_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
