/* totp: RFC 6238 codes with liboath, and the replay table (see totp.h). */
#include "totp.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <liboath/oath.h>
#include <openssl/crypto.h>

static pthread_once_t totp_once = PTHREAD_ONCE_INIT;
static int totp_init_rc;

static void totp_init(void)
{
	totp_init_rc = oath_init();
}

static bool totp_ready(void)
{
	pthread_once(&totp_once, totp_init);
	return totp_init_rc == OATH_OK;
}

void totp_params_default(struct totp_params *p)
{
	memset(p, 0, sizeof(*p));
	p->alg = TOTP_SHA1;
	p->digits = 6;
	p->period = 30;
}

static const char *const alg_names[] = {"SHA1", "SHA256", "SHA512"};

const char *totp_alg_name(enum totp_alg alg)
{
	return (unsigned)alg < 3 ? alg_names[alg] : "?";
}

int totp_alg_parse(const char *name, size_t len, enum totp_alg *alg)
{
	for (unsigned i = 0; i < 3; i++) {
		if (strlen(alg_names[i]) == len && strncasecmp(name, alg_names[i], len) == 0) {
			*alg = (enum totp_alg)i;
			return 0;
		}
	}
	return -1;
}

int totp_secret_decode(const char *b32, size_t len, struct totp_params *p, struct errbuf *err)
{
	char upper[TOTP_BASE32_MAX + 8], *bin = NULL; /* room for the padding */
	size_t n = 0, binlen = 0;
	int rc;

	if (!totp_ready())
		return errbuf_set(err, "liboath cannot start");
	while (len > 0 && b32[len - 1] == '=')
		len--;
	if (len == 0)
		return errbuf_set(err, "the TOTP secret is empty");
	if (len > TOTP_BASE32_MAX)
		return errbuf_set(err, "the TOTP secret is longer than %d bytes", TOTP_SECRET_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = (char)toupper((unsigned char)b32[i]);

		if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7')))
			return errbuf_set(err, "the TOTP secret is not base32 (A-Z, 2-7)");
		upper[n++] = c;
	}
	/* liboath wants whole 8-character groups: pad as RFC 4648 does. */
	while (n % 8 != 0)
		upper[n++] = '=';
	rc = oath_base32_decode(upper, n, &bin, &binlen);
	explicit_bzero(upper, sizeof(upper));
	if (rc != OATH_OK || bin == NULL) {
		free(bin);
		return errbuf_set(err, "the TOTP secret is not valid base32");
	}
	if (binlen < TOTP_SECRET_MIN || binlen > TOTP_SECRET_MAX) {
		explicit_bzero(bin, binlen);
		free(bin);
		return errbuf_set(err, "the TOTP secret has %zu bytes; %d to %d are accepted",
				  binlen, TOTP_SECRET_MIN, TOTP_SECRET_MAX);
	}
	memcpy(p->secret, bin, binlen);
	p->secret_len = binlen;
	explicit_bzero(bin, binlen);
	free(bin);
	return 0;
}

int totp_secret_encode(const struct totp_params *p, char *out, size_t outlen)
{
	char *b32 = NULL;
	size_t len = 0;

	if (!totp_ready() ||
	    oath_base32_encode((const char *)p->secret, p->secret_len, &b32, &len) != OATH_OK)
		return -1;
	while (len > 0 && b32[len - 1] == '=')
		len--;
	if (len + 1 > outlen) {
		explicit_bzero(b32, len);
		free(b32);
		return -1;
	}
	memcpy(out, b32, len);
	out[len] = '\0';
	explicit_bzero(b32, len);
	free(b32);
	return 0;
}

int totp_secret_generate(struct totp_params *p, struct errbuf *err)
{
	if (getrandom(p->secret, TOTP_SECRET_NEW, 0) != TOTP_SECRET_NEW)
		return errbuf_errno(err, errno, "getrandom");
	p->secret_len = TOTP_SECRET_NEW;
	return 0;
}

static int totp_flags(enum totp_alg alg)
{
	return alg == TOTP_SHA256   ? OATH_TOTP_HMAC_SHA256
	       : alg == TOTP_SHA512 ? OATH_TOTP_HMAC_SHA512
				    : 0;
}

int totp_generate(const struct totp_params *p, time_t now, char out[TOTP_DIGITS_MAX + 1])
{
	if (!totp_ready() || p->digits < 6 || p->digits > TOTP_DIGITS_MAX || p->period == 0)
		return -1;
	return oath_totp_generate2((const char *)p->secret, p->secret_len, now, p->period, 0,
				   p->digits, totp_flags(p->alg), out) == OATH_OK
		       ? 0
		       : -1;
}

int totp_check(const struct totp_params *p, const char *code, time_t now, unsigned window,
	       uint64_t *step)
{
	char typed[TOTP_DIGITS_MAX + 1], want[TOTP_DIGITS_MAX + 1];
	size_t n = 0;
	bool well_formed = true;
	int found = -1;
	uint64_t found_step = 0;

	if (window > TOTP_WINDOW_MAX)
		window = TOTP_WINDOW_MAX;
	/* "123 456" as the apps show it; anything but digits and spaces, or the
	 * wrong count, can match nothing, but costs the same. */
	memset(typed, 'x', sizeof(typed));
	for (const char *c = code; *c != '\0'; c++) {
		if (*c == ' ')
			continue;
		if (*c < '0' || *c > '9' || n == (size_t)p->digits) {
			well_formed = false;
			continue;
		}
		typed[n++] = *c;
	}
	typed[TOTP_DIGITS_MAX] = '\0';
	if (n != p->digits)
		well_formed = false;
	for (long i = -(long)window; i <= (long)window; i++) {
		time_t at = now + (time_t)i * (time_t)p->period;
		int diff;

		memset(want, 'y', sizeof(want));
		if (at < 0 || totp_generate(p, at, want) < 0)
			continue;
		diff = CRYPTO_memcmp(typed, want, p->digits);
		if (diff == 0 && well_formed && found < 0) {
			found = 0;
			found_step = (uint64_t)at / p->period;
		}
	}
	explicit_bzero(typed, sizeof(typed));
	explicit_bzero(want, sizeof(want));
	if (found < 0)
		return -1;
	*step = found_step;
	return 0;
}

/* RFC 3986 unreserved characters pass; everything else is %XX. */
static int uri_put(char **o, char *end, const char *s, bool encode)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = !encode || isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';

		if (*o + (plain ? 1 : 3) >= end)
			return -1;
		if (plain) {
			*(*o)++ = (char)c;
		} else {
			*(*o)++ = '%';
			*(*o)++ = hex[c >> 4];
			*(*o)++ = hex[c & 15];
		}
	}
	**o = '\0';
	return 0;
}

int totp_uri(const struct totp_params *p, const char *issuer, const char *user, char *out,
	     size_t outlen)
{
	char secret[TOTP_BASE32_MAX + 1], num[48];
	char *o = out, *end = out + outlen;
	int rc;

	if (outlen == 0 || totp_secret_encode(p, secret, sizeof(secret)) < 0)
		return -1;
	snprintf(num, sizeof(num), "&digits=%u&period=%u", p->digits, p->period);
	rc = uri_put(&o, end, "otpauth://totp/", false) | uri_put(&o, end, issuer, true) |
	     uri_put(&o, end, ":", false) | uri_put(&o, end, user, true) |
	     uri_put(&o, end, "?secret=", false) | uri_put(&o, end, secret, false) |
	     uri_put(&o, end, "&issuer=", false) | uri_put(&o, end, issuer, true) |
	     uri_put(&o, end, "&algorithm=", false) |
	     uri_put(&o, end, totp_alg_name(p->alg), false) | uri_put(&o, end, num, false);
	explicit_bzero(secret, sizeof(secret));
	return rc == 0 ? 0 : -1;
}

/* ---- replay ------------------------------------------------------------- */

struct totp_used {
	unsigned char key[TOTP_REPLAY_KEY_LEN];
	uint64_t step;    /* the latest step used */
	time_t forget_at; /* no code of step or before can be valid from then on */
	bool live;
};

struct totp_replay {
	pthread_mutex_t lock;
	struct totp_used *slots; /* open addressing, linear probing */
	size_t cap, count;       /* cap: a power of two, at most half full */
};

struct totp_replay *totp_replay_create(void)
{
	struct totp_replay *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->cap = 64;
	r->slots = calloc(r->cap, sizeof(*r->slots));
	if (r->slots == NULL) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

void totp_replay_free(struct totp_replay *r)
{
	if (r == NULL)
		return;
	explicit_bzero(r->slots, r->cap * sizeof(*r->slots));
	free(r->slots);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static size_t replay_home(const struct totp_replay *r, const unsigned char *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h)); /* the key is a digest: any 8 bytes are uniform */
	return (size_t)h & (r->cap - 1);
}

static struct totp_used *replay_find(struct totp_replay *r, const unsigned char *key)
{
	for (size_t i = replay_home(r, key);; i = (i + 1) & (r->cap - 1)) {
		if (!r->slots[i].live || memcmp(r->slots[i].key, key, TOTP_REPLAY_KEY_LEN) == 0)
			return &r->slots[i];
	}
}

/* Puts back every live slot whose codes may still be valid, into a table of
 * cap slots: forgetting the rest keeps the table as small as the users who
 * logged in during the last few minutes. */
static int replay_rebuild(struct totp_replay *r, size_t cap, time_t now)
{
	struct totp_used *old = r->slots;
	size_t old_cap = r->cap;

	r->slots = calloc(cap, sizeof(*r->slots));
	if (r->slots == NULL) {
		r->slots = old;
		return -1;
	}
	r->cap = cap;
	r->count = 0;
	for (size_t i = 0; i < old_cap; i++) {
		if (old[i].live && old[i].forget_at > now) {
			*replay_find(r, old[i].key) = old[i];
			r->count++;
		}
	}
	explicit_bzero(old, old_cap * sizeof(*old));
	free(old);
	return 0;
}

bool totp_replay_claim(struct totp_replay *r, const unsigned char key[TOTP_REPLAY_KEY_LEN],
		       uint64_t step, unsigned period, time_t now)
{
	struct totp_used *u;
	bool ok = true;
	/* A code of step s is accepted until the end of step s + TOTP_WINDOW_MAX,
	 * whatever window a reload sets. */
	time_t forget_at = (time_t)((step + 1 + TOTP_WINDOW_MAX) * period);

	pthread_mutex_lock(&r->lock);
	if ((r->count + 1) * 2 > r->cap) {
		size_t cap = r->cap;

		if (replay_rebuild(r, cap, now) == 0 && (r->count + 1) * 2 > cap)
			(void)replay_rebuild(r, cap * 2, now);
	}
	u = replay_find(r, key);
	if (u->live && u->forget_at > now && step <= u->step) {
		ok = false;
	} else if (u->live || (r->count + 1) * 2 <= r->cap) {
		if (!u->live)
			r->count++;
		memcpy(u->key, key, TOTP_REPLAY_KEY_LEN);
		u->live = true;
		u->step = step;
		u->forget_at = forget_at;
	} else {
		ok = false; /* out of memory: refusing is the safe answer */
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

size_t totp_replay_count(struct totp_replay *r)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	n = r->count;
	pthread_mutex_unlock(&r->lock);
	return n;
}
