/* totp: time-based one-time passwords (RFC 6238), computed by liboath: a
 * user's parameters, checking a code within a window of time steps in constant
 * time, the otpauth:// URI an authenticator app scans, and the table that
 * refuses a code once it was used. Thread-safe. */
#ifndef SOCKGATE_TOTP_H
#define SOCKGATE_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "errbuf.h"

#define TOTP_SECRET_MIN     10 /* bytes: 80 bits, what older apps enrolled */
#define TOTP_SECRET_MAX     64 /* bytes: 512 bits */
#define TOTP_SECRET_NEW     20 /* bytes a new enrolment gets (160 bits, RFC 4226) */
#define TOTP_DIGITS_MAX     8
#define TOTP_WINDOW_MAX     10 /* time steps either side of now */
#define TOTP_REPLAY_KEY_LEN 32
#define TOTP_BASE32_MAX     (TOTP_SECRET_MAX * 8 / 5 + 8)

enum totp_alg { TOTP_SHA1 = 0, TOTP_SHA256, TOTP_SHA512 };

struct totp_params {
	unsigned char secret[TOTP_SECRET_MAX];
	size_t secret_len;
	enum totp_alg alg;
	unsigned digits; /* 6, 7 or 8 */
	unsigned period; /* seconds per time step */
};

/* RFC 6238's defaults: SHA-1, 6 digits, 30 seconds; no secret yet. */
void totp_params_default(struct totp_params *p);

/* The names in files and URIs: "SHA1", "SHA256", "SHA512" (any case). */
const char *totp_alg_name(enum totp_alg alg);
int totp_alg_parse(const char *name, size_t len, enum totp_alg *alg);

/* RFC 4648 base32 (A-Z, 2-7; lower case and '=' padding accepted) into
 * p->secret: TOTP_SECRET_MIN..TOTP_SECRET_MAX bytes. err never quotes it. */
int totp_secret_decode(const char *b32, size_t len, struct totp_params *p, struct errbuf *err);
/* The secret in base32 without padding, NUL-terminated; -1 if out is short. */
int totp_secret_encode(const struct totp_params *p, char *out, size_t outlen);
/* A new secret of TOTP_SECRET_NEW bytes from the kernel's random source. */
int totp_secret_generate(struct totp_params *p, struct errbuf *err);

/* Checks code (digits only, spaces between groups ignored) against the time
 * steps from now - window to now + window. Every call computes all 2 * window
 * + 1 codes and compares each in constant time, whatever the code, so the
 * time says nothing of which step matched or whether one did. Returns 0 and
 * the matching step's number in *step (steps since the epoch), else -1. */
int totp_check(const struct totp_params *p, const char *code, time_t now, unsigned window,
	       uint64_t *step);

/* The code at now (p->digits digits and a NUL), for tools and tests. */
int totp_generate(const struct totp_params *p, time_t now, char out[TOTP_DIGITS_MAX + 1]);

/* otpauth://totp/ISSUER:USER?secret=...&issuer=ISSUER&algorithm=...&digits=...
 * &period=..., with ISSUER and USER percent-encoded. -1 if out is short. */
int totp_uri(const struct totp_params *p, const char *issuer, const char *user, char *out,
	     size_t outlen);

/* Codes used, so that none is accepted twice. A key names a user and secret
 * (credentials make it); the table lives as long as the daemon, across
 * reloads, and forgets a key once no code it has seen could be valid any more. */
struct totp_replay;

struct totp_replay *totp_replay_create(void);
void totp_replay_free(struct totp_replay *r);
/* True, and step recorded, if step is later than every step used with key
 * before: the code may be accepted. False if it (or a later one) was used. */
bool totp_replay_claim(struct totp_replay *r, const unsigned char key[TOTP_REPLAY_KEY_LEN],
		       uint64_t step, unsigned period, time_t now);
/* Keys remembered, for tests. */
size_t totp_replay_count(struct totp_replay *r);

#endif
