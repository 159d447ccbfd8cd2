/* credentials: parses and checks a "user:crypt-hash" file into an immutable,
 * reference-counted snapshot, and verifies passwords against it (see
 * credentials.h). Nothing here logs: failures are described in a struct errbuf. */
#include "credentials.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "file.h"
#include "net.h"
#include "totp.h"

/* crypt(3)'s base-64 alphabet: every strong method writes its parameters, salt
 * and checksum with these characters only. */
static const char crypt_alphabet[] =
	"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

struct credentials_entry {
	const char *user; /* user, hash, fields and groups point into credentials.text */
	const char *hash; /* without the '!' of a locked account */
	size_t hash_len;
	const char *fields; /* everything after "user:", for comparisons across reloads */
	size_t fields_len;
	const char *groups; /* "a,b", or NULL */
	size_t groups_len;
	unsigned line;
	bool locked;
	int64_t expires_day;      /* refused from this day (days since 1970-01-01 UTC), or
				     CREDENTIALS_NEVER */
	struct totp_params *totp; /* NULL: no second factor enrolled */
	struct net_cidr *from;    /* from=: the networks the user may log in from */
	size_t n_from;
	unsigned char totp_key[TOTP_REPLAY_KEY_LEN]; /* names user and secret for replays */
};

struct credentials {
	unsigned refs; /* changed with __atomic builtins only */
	size_t count;
	struct credentials_entry *entries; /* sorted by user for binary search */
	char *text;                        /* private copy of the file, split in place */
	size_t text_size;
	char dummy[CRYPT_OUTPUT_SIZE]; /* hashed for unknown users; can never match */
	size_t dummy_len;
	size_t settings; /* distinct hash methods and costs among the entries */
	const struct credentials_entry **setting_of; /* the earliest entry of each */
	size_t dummy_peers;            /* entries with the method and cost the dummy has */
	struct totp_params dummy_totp; /* checked for users without a secret: the same cost */
};

/* The methods the header promises. checksum_len is the length of the encoded
 * digest after the setting; bcrypt has no '$' before it, so it is special-cased. */
struct hash_method {
	const char *prefix;
	const char *name;
	size_t checksum_len;
	bool bcrypt;
	bool libxcrypt_legacy; /* libxcrypt calls it legacy, but the header allows it */
};

static const struct hash_method strong_methods[] = {
	{"$y$", "yescrypt", 43, false, false},
	{"$gy$", "gost-yescrypt", 43, false, false},
	{"$7$", "scrypt", 43, false, false},
	{"$2b$", "bcrypt", 31, true, false},
	{"$2y$", "bcrypt", 31, true, false},
	{"$2a$", "bcrypt", 31, true, false},
	{"$6$", "sha512-crypt", 86, false, false},
	/* libxcrypt 4.4 reports sha256-crypt as CRYPT_SALT_METHOD_LEGACY; it is
	 * still salted and iterated, so existing files keep working. */
	{"$5$", "sha256-crypt", 43, false, true},
};

/* Known weak methods, named so the message can say what was found without
 * quoting the field itself. */
static const struct {
	const char *prefix;
	const char *name;
} legacy_methods[] = {
	{"$1$", "MD5-crypt"},       {"$md5", "Sun MD5-crypt"},       {"$sha1$", "SHA1-crypt"},
	{"$3$", "NT hash"},         {"$2x$", "buggy bcrypt ($2x$)"}, {"$2$", "original bcrypt"},
	{"_", "BSDi extended DES"},
};

#define ARRAY_SIZE(a)   (sizeof(a) / sizeof((a)[0]))
#define BCRYPT_HASH_LEN 60 /* "$2b$NN$" + 22 salt + 31 checksum */

static bool user_char_ok(unsigned char c)
{
	/* Printable ASCII without space: no whitespace or control bytes can hide in
	 * a name, and nothing outside ASCII needs a locale to compare. */
	return c > 0x20 && c < 0x7f && c != ':';
}

/* The shared user-name rule; reason is a constant string (the name itself may
 * be a mistyped password, so it is never quoted when it is invalid). */
static const char *user_problem(const char *user, size_t len)
{
	if (len == 0)
		return "empty user name";
	if (len > CREDENTIALS_MAX_USER)
		return "user name longer than 255 bytes";
	if (user[0] == '#')
		return "user name starts with '#' (that would be a comment)";
	for (size_t i = 0; i < len; i++) {
		if (user[i] == ':')
			return "user name contains ':'";
		if (!user_char_ok((unsigned char)user[i]))
			return "user name contains whitespace, a control byte or non-ASCII";
	}
	return NULL;
}

bool credentials_valid_user(const char *user, struct errbuf *err)
{
	const char *problem;

	if (user == NULL) {
		errbuf_set(err, "no user name");
		return false;
	}
	problem = user_problem(user, strnlen(user, CREDENTIALS_MAX_USER + 1));
	if (problem != NULL) {
		errbuf_set(err, "%s (allowed: 1-%d printable ASCII characters, no ':' or space)",
			   problem, CREDENTIALS_MAX_USER);
		return false;
	}
	return true;
}

/* Range checks rather than strchr(crypt_alphabet): this runs on every byte
 * of every hash, and files may hold 100k users. */
static bool crypt_char(char c)
{
	return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
	       (c >= 'a' && c <= 'z');
}

static bool in_alphabet(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!crypt_char(s[i]))
			return false;
	return true;
}

static const struct hash_method *method_find(const char *hash)
{
	for (size_t i = 0; i < ARRAY_SIZE(strong_methods); i++)
		if (strncmp(hash, strong_methods[i].prefix, strlen(strong_methods[i].prefix)) == 0)
			return &strong_methods[i];
	return NULL;
}

/* Checks the shape crypt_checksalt() does not: crypt_checksalt() looks at the
 * method prefix only, so "$6$" or "$6$salt" (a setting without a digest, which
 * could never match) would pass it. Returns the offset of the checksum, or 0. */
static size_t checksum_offset(const struct hash_method *m, const char *hash, size_t len)
{
	size_t plen = strlen(m->prefix);
	const char *setting = hash + plen;
	const char *last;

	if (m->bcrypt) {
		int cost;

		if (len != BCRYPT_HASH_LEN || setting[0] < '0' || setting[0] > '9' ||
		    setting[1] < '0' || setting[1] > '9' || setting[2] != '$' ||
		    !in_alphabet(setting + 3, len - plen - 3))
			return 0;
		cost = (setting[0] - '0') * 10 + (setting[1] - '0');
		if (cost < 4 || cost > 31)
			return 0;
		return len - m->checksum_len;
	}
	last = memrchr(hash, '$', len);
	if (last == NULL || last < setting + 1 ||
	    (size_t)(hash + len - last - 1) != m->checksum_len)
		return 0;
	/* sha-crypt may carry "rounds=N$" before the salt; nothing else uses '='. */
	if (m->prefix[1] == '5' || m->prefix[1] == '6') {
		if (strncmp(setting, "rounds=", 7) == 0) {
			const char *p = setting + 7;
			unsigned long rounds = 0;

			/* libxcrypt refuses, at every check, a count outside
			 * 1000..999999999 or with a leading zero: such a hash
			 * could never match, so it is not loaded either. */
			while (*p >= '0' && *p <= '9' && p < setting + 7 + 10)
				rounds = rounds * 10 + (unsigned long)(*p++ - '0');
			if (setting[7] == '0' || rounds < 1000 || rounds > 999999999 || *p != '$')
				return 0;
			setting = p + 1;
			if (setting >= last) /* no salt: "rounds=N$" then the digest */
				return 0;
		}
		if (memchr(setting, '$', (size_t)(last - setting)) != NULL)
			return 0;
	}
	for (const char *p = setting; p < hash + len; p++)
		if (*p != '$' && !crypt_char(*p))
			return 0;
	return (size_t)(last + 1 - hash);
}

/* Decides whether hash is acceptable. On refusal, why gets a predicate for
 * "password field ...": the field may be a plaintext password, so it is only
 * ever described, never quoted. */
static const struct hash_method *hash_check(const char *hash, size_t len, char *why,
					    size_t why_size)
{
	const struct hash_method *m;
	int rc;

	if (len == 0) {
		snprintf(why, why_size, "is empty");
		return NULL;
	}
	if (hash[0] == '!' || hash[0] == '*') {
		snprintf(why, why_size,
			 "is a locked-account marker ('!' or '*') without a hash "
			 "(sockgate-passwd -L locks an account and keeps its hash)");
		return NULL;
	}
	if (len >= CRYPT_OUTPUT_SIZE) {
		snprintf(why, why_size, "is too long to be a crypt hash");
		return NULL;
	}
	m = method_find(hash);
	if (m == NULL) {
		const char *name = NULL;

		for (size_t i = 0; i < ARRAY_SIZE(legacy_methods); i++)
			if (strncmp(hash, legacy_methods[i].prefix,
				    strlen(legacy_methods[i].prefix)) == 0)
				name = legacy_methods[i].name;
		if (name == NULL && len == 13 && in_alphabet(hash, len))
			snprintf(why, why_size,
				 "is a traditional DES hash (weak) or a plaintext "
				 "password");
		else if (name != NULL)
			snprintf(why, why_size, "uses %s, a weak legacy method", name);
		else if (hash[0] == '$')
			snprintf(why, why_size, "uses an unknown hash method");
		else
			snprintf(why, why_size, "is not a crypt hash (a plaintext password?)");
		return NULL;
	}
	if (checksum_offset(m, hash, len) == 0) {
		snprintf(why, why_size, "is not a well-formed %s hash", m->name);
		return NULL;
	}
	rc = crypt_checksalt(hash);
	if (rc == CRYPT_SALT_OK || (rc == CRYPT_SALT_METHOD_LEGACY && m->libxcrypt_legacy))
		return m;
	if (rc == CRYPT_SALT_METHOD_DISABLED)
		snprintf(why, why_size, "uses %s, which this libxcrypt has disabled", m->name);
	else if (rc == CRYPT_SALT_TOO_CHEAP)
		snprintf(why, why_size, "uses a %s cost libxcrypt considers too cheap", m->name);
	else
		snprintf(why, why_size, "is a %s hash libxcrypt cannot check", m->name);
	return NULL;
}

static void entry_free(struct credentials_entry *e)
{
	free(e->from);
	e->from = NULL;
	e->n_from = 0;
	if (e->totp != NULL) {
		explicit_bzero(e->totp, sizeof(*e->totp));
		free(e->totp);
		e->totp = NULL;
	}
}

static int entry_cmp(const void *a, const void *b)
{
	const struct credentials_entry *x = a, *y = b;
	int r = strcmp(x->user, y->user);

	/* Ties by line, so duplicates sit in file order and the report is stable. */
	if (r == 0)
		r = x->line < y->line ? -1 : x->line > y->line;
	return r;
}

static const struct credentials_entry *entry_find(const struct credentials *c, const char *user)
{
	size_t lo = 0, hi = c->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(user, c->entries[mid].user);

		if (r == 0)
			return &c->entries[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Sorts the entries and reports the duplicate a top-to-bottom reader would meet
 * first: the pair whose later line is smallest. */
static int entries_sort(struct credentials *c, const char *name, struct errbuf *err)
{
	const struct credentials_entry *dup = NULL;

	if (c->count > 1)
		qsort(c->entries, c->count, sizeof(c->entries[0]), entry_cmp);
	for (size_t i = 1; i < c->count; i++) {
		if (strcmp(c->entries[i - 1].user, c->entries[i].user) != 0)
			continue;
		if (dup == NULL || c->entries[i].line < dup[1].line)
			dup = &c->entries[i - 1];
	}
	if (dup != NULL)
		return errbuf_set(err, "%s:%u: duplicate user \"%s\" (first defined at line %u)",
				  name, dup[1].line, dup[1].user, dup[0].line);
	return 0;
}

/* The length of a hash's method and cost ("$y$j9T$", "$2b$12$",
 * "$6$rounds=N$"): the setting without its salt. scrypt ("$7$") encodes its
 * parameters in the 11 characters before the salt, with no '$' between. */
static size_t cost_len(const struct credentials_entry *e)
{
	size_t off = checksum_offset(method_find(e->hash), e->hash, e->hash_len);
	const char *last = off > 1 ? memrchr(e->hash, '$', off - 1) : NULL;

	if (strncmp(e->hash, "$7$", 3) == 0)
		return off >= 14 ? 14 : 3;
	return last != NULL ? (size_t)(last - e->hash) + 1 : 0;
}

/* An entry's method and cost as a sort key, worked out once per entry. Spellings
 * that cost the same compare equal: bcrypt's $2a$, $2b$ and $2y$ at one cost,
 * and sha-crypt's default next to an explicit "rounds=5000$". */
struct cost_key {
	const struct credentials_entry *e;
	size_t len;
	bool own;     /* the key is buf, else the start of e->hash */
	char buf[24]; /* "$2$NN$", "$6$rounds=5000$" */
};

static void cost_key_make(struct cost_key *k, const struct credentials_entry *e)
{
	const char *h = e->hash;

	k->e = e;
	k->len = cost_len(e);
	k->own = false;
	if (h[1] == '2' && k->len == 7) {
		k->len = (size_t)snprintf(k->buf, sizeof(k->buf), "$2$%.3s", h + 4);
		k->own = true;
	} else if ((h[1] == '5' || h[1] == '6') && k->len == 3) {
		k->len = (size_t)snprintf(k->buf, sizeof(k->buf), "%.3srounds=5000$", h);
		k->own = true;
	}
}

static int cost_key_order(const struct cost_key *a, const struct cost_key *b)
{
	const char *ka = a->own ? a->buf : a->e->hash, *kb = b->own ? b->buf : b->e->hash;
	int r = memcmp(ka, kb, a->len < b->len ? a->len : b->len);

	return r != 0 ? r : (a->len > b->len) - (a->len < b->len);
}

/* By key, then by line. */
static int cost_key_cmp(const void *pa, const void *pb)
{
	const struct cost_key *a = pa, *b = pb;
	int r = cost_key_order(a, b);

	return r != 0 ? r : (a->e->line > b->e->line) - (a->e->line < b->e->line);
}

/* The entry whose method and cost most entries share (the earliest such line
 * on a tie), noting the earliest entry of every distinct setting on the way.
 * NULL if out of memory. */
static const struct credentials_entry *dummy_source(struct credentials *c)
{
	struct cost_key *v = calloc(c->count, sizeof(*v));
	const struct credentials_entry *best = NULL;
	size_t best_n = 0;

	c->setting_of = calloc(c->count, sizeof(*c->setting_of));
	if (v == NULL || c->setting_of == NULL) {
		free(v);
		return NULL;
	}
	for (size_t i = 0; i < c->count; i++)
		cost_key_make(&v[i], &c->entries[i]);
	qsort(v, c->count, sizeof(*v), cost_key_cmp);
	c->settings = 0;
	for (size_t i = 0, n; i < c->count; i += n) {
		/* Within a run of equal keys, entries are in line order. */
		for (n = 1; i + n < c->count && cost_key_order(&v[i + n], &v[i]) == 0; n++)
			;
		c->setting_of[c->settings++] = v[i].e;
		if (n > best_n || (n == best_n && v[i].e->line < best->line)) {
			best = v[i].e;
			best_n = n;
		}
	}
	c->dummy_peers = best_n;
	free(v);
	return best;
}

/* The dummy has the method, cost and salt of an entry whose method and cost
 * most users share, so hashing against it costs what their checks cost, and
 * random characters for a checksum so no password can produce it. Unknown
 * users are denied regardless; the random part only guards against a logic
 * slip. */
static int dummy_make(struct credentials *c, const char *name, struct errbuf *err)
{
	unsigned char rnd[CRYPT_OUTPUT_SIZE];
	const struct credentials_entry *model = NULL;
	size_t off, len;
	const char *src;

	totp_params_default(&c->dummy_totp);
	if (totp_secret_generate(&c->dummy_totp, err) < 0)
		return -1;
	if (c->count > 0) {
		model = dummy_source(c);
		if (model == NULL)
			return errbuf_errno(err, ENOMEM, "%s", name);
	}
	if (model == NULL) {
		/* An empty file: any setting of the preferred method will do. */
		if (crypt_gensalt_rn(NULL, 0, NULL, 0, c->dummy, sizeof(c->dummy)) == NULL)
			return errbuf_errno(err, errno, "%s: cannot make a dummy hash setting",
					    name);
		c->dummy_len = strlen(c->dummy);
		return 0;
	}
	src = model->hash;
	len = model->hash_len;
	/* The entry passed hash_check(), so its method and checksum are known. */
	off = checksum_offset(method_find(src), src, len);
	if (getrandom(rnd, len - off, 0) != (ssize_t)(len - off))
		return errbuf_errno(err, errno, "%s: getrandom", name);
	memcpy(c->dummy, src, off);
	for (size_t i = off; i < len; i++)
		c->dummy[i] = crypt_alphabet[rnd[i - off] & 63];
	c->dummy[len] = '\0';
	c->dummy_len = len;
	explicit_bzero(rnd, sizeof(rnd));
	return 0;
}

/* Hashes once with each distinct method and cost: parameters libxcrypt cannot
 * use (which the parser does not decode) would fail every check of those users
 * and, in the dummy's setting, every unknown user's, unlike a wrong password.
 * One check's cost per setting, once a load (usually one). */
static int settings_check(const struct credentials *c, const char *name, struct errbuf *err)
{
	struct crypt_data *data = calloc(1, sizeof(*data));
	int rc = 0;

	if (data == NULL)
		return errbuf_set(err, "out of memory");
	for (size_t i = 0; i < c->settings && rc == 0; i++) {
		const char *out = crypt_r("sockgate-setting-check", c->setting_of[i]->hash, data);

		if (out == NULL || out[0] == '*')
			rc = errbuf_set(err,
					"%s:%u: user \"%s\": the hash has parameters libxcrypt "
					"cannot use; set that password again with sockgate-passwd",
					name, c->setting_of[i]->line, c->setting_of[i]->user);
	}
	explicit_bzero(data, sizeof(*data));
	free(data);
	return rc;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no time zone or locale takes part. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int credentials_parse_date(const char *s, size_t len, int64_t *day)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y = 0, m, d;

	if (len != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (size_t i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -1;
	for (size_t i = 0; i < 4; i++)
		y = y * 10 + (unsigned)(s[i] - '0');
	m = (unsigned)(s[5] - '0') * 10 + (unsigned)(s[6] - '0');
	d = (unsigned)(s[8] - '0') * 10 + (unsigned)(s[9] - '0');
	if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] ||
	    (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
		return -1;
	*day = days_from_civil(y, m, d);
	return 0;
}

static bool group_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

const char *credentials_groups_problem(const char *s, size_t len)
{
	size_t n = 0, start = 0;

	if (len == 0)
		return "an empty group list";
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != ',') {
			if (!group_char(s[i]))
				return "a group name with a character other than A-Z a-z 0-9 . _ -";
			continue;
		}
		if (i == start)
			return "an empty group name";
		if (i - start > CREDENTIALS_MAX_GROUP)
			return "a group name longer than 64 characters";
		for (size_t j = 0; j < start; j++) {
			size_t k = j;

			while (k < start && s[k] != ',')
				k++;
			if (k - j == i - start && memcmp(s + j, s + start, i - start) == 0)
				return "a group named twice";
			j = k;
		}
		if (++n > CREDENTIALS_MAX_GROUPS)
			return "more than 64 groups";
		start = i + 1;
	}
	return NULL;
}

/* The key that names this user and secret in the replay table. */
static int totp_key_make(struct credentials_entry *e)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(md, e->user, strlen(e->user) + 1) == 1 &&
		 EVP_DigestUpdate(md, e->totp->secret, e->totp->secret_len) == 1 &&
		 EVP_DigestFinal_ex(md, e->totp_key, &n) == 1 && n == TOTP_REPLAY_KEY_LEN;

	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

/* The fields after the hash. The TOTP ones come last: from index FIELD_TOTP
 * on, they need e->totp. */
static const char *const field_names[] = {"expires",  "groups",      "from",       "totp",
					  "totp_alg", "totp_digits", "totp_period"};
enum { FIELD_TOTP = 3, FIELD_COUNT = 7 };

const char *credentials_next_field(const char *p, const char *end)
{
	for (const char *c = memchr(p, ':', (size_t)(end - p)); c != NULL;
	     c = c + 1 < end ? memchr(c + 1, ':', (size_t)(end - c - 1)) : NULL) {
		for (size_t k = 0; k < FIELD_COUNT; k++) {
			size_t n = strlen(field_names[k]);

			if ((size_t)(end - c - 1) > n && memcmp(c + 1, field_names[k], n) == 0 &&
			    c[1 + n] == '=')
				return c;
		}
	}
	return NULL;
}

/* from=RANGE,RANGE...: the networks the user may log in from. */
static int from_parse(struct credentials_entry *e, const char *v, size_t vlen, char *why,
		      size_t why_size)
{
	size_t at = 0;

	if (vlen == 0) {
		snprintf(why, why_size, "from: an empty list of networks");
		return -1;
	}
	while (at <= vlen) {
		const char *comma = memchr(v + at, ',', vlen - at);
		size_t end = comma != NULL ? (size_t)(comma - v) : vlen;
		char one[64];
		struct net_cidr *grown;
		struct errbuf err;

		if (end - at == 0 || end - at >= sizeof(one) || e->n_from >= CREDENTIALS_MAX_FROM) {
			snprintf(why, why_size, "from: %s",
				 end - at == 0 ? "an empty network"
				 : e->n_from >= CREDENTIALS_MAX_FROM
					 ? "more than 32 networks"
					 : "a network longer than 63 characters");
			return -1;
		}
		memcpy(one, v + at, end - at);
		one[end - at] = '\0';
		grown = realloc(e->from, (e->n_from + 1) * sizeof(*e->from));
		if (grown == NULL) {
			snprintf(why, why_size, "out of memory");
			return -1;
		}
		e->from = grown;
		if (net_parse_cidr(one, &e->from[e->n_from], &err) < 0) {
			snprintf(why, why_size, "from: %.150s", err.msg);
			return -1;
		}
		e->n_from++;
		at = end + 1;
	}
	return 0;
}

/* One "name=value" field after the hash. */
static int field_parse(struct credentials_entry *e, const char *f, size_t len, unsigned *seen,
		       char *why, size_t why_size)
{
	const char *const *names = field_names;
	const char *eq = memchr(f, '=', len), *v;
	size_t nlen, vlen, k;
	struct errbuf err;

	if (eq == NULL) {
		snprintf(why, why_size, "a field after the hash is not NAME=VALUE");
		return -1;
	}
	nlen = (size_t)(eq - f);
	v = eq + 1;
	vlen = len - nlen - 1;
	for (k = 0; k < FIELD_COUNT; k++)
		if (strlen(names[k]) == nlen && memcmp(f, names[k], nlen) == 0)
			break;
	if (k == FIELD_COUNT) {
		snprintf(why, why_size,
			 "unknown field \"%.*s\" (known: expires, groups, from, totp, "
			 "totp_alg, totp_digits, totp_period)",
			 (int)(nlen < 32 ? nlen : 32), f);
		return -1;
	}
	if (*seen & (1u << k)) {
		snprintf(why, why_size, "field \"%s\" given twice", names[k]);
		return -1;
	}
	*seen |= 1u << k;
	if (k >= FIELD_TOTP && e->totp == NULL) {
		e->totp = calloc(1, sizeof(*e->totp));
		if (e->totp == NULL) {
			snprintf(why, why_size, "out of memory");
			return -1;
		}
		totp_params_default(e->totp);
	}
	switch (k) {
	case 0:
		if (credentials_parse_date(v, vlen, &e->expires_day) < 0) {
			snprintf(why, why_size, "expires is not a date YYYY-MM-DD");
			return -1;
		}
		return 0;
	case 1: {
		const char *problem = credentials_groups_problem(v, vlen);

		if (problem != NULL) {
			snprintf(why, why_size, "groups: %s", problem);
			return -1;
		}
		e->groups = v;
		e->groups_len = vlen;
		return 0;
	}
	case 2:
		return from_parse(e, v, vlen, why, why_size);
	case 3:
		if (totp_secret_decode(v, vlen, e->totp, &err) < 0) {
			snprintf(why, why_size, "totp: %.150s", err.msg);
			return -1;
		}
		return 0;
	case 4:
		if (totp_alg_parse(v, vlen, &e->totp->alg) < 0) {
			snprintf(why, why_size, "totp_alg is not SHA1, SHA256 or SHA512");
			return -1;
		}
		return 0;
	case 5:
		if (vlen != 1 || v[0] < '6' || v[0] > '8') {
			snprintf(why, why_size, "totp_digits is not 6, 7 or 8");
			return -1;
		}
		e->totp->digits = (unsigned)(v[0] - '0');
		return 0;
	default: {
		unsigned period = 0;

		for (size_t i = 0; i < vlen && i < 4; i++)
			period = v[i] >= '0' && v[i] <= '9' ? period * 10 + (unsigned)(v[i] - '0')
							    : 1000;
		if (vlen == 0 || vlen > 3 || period < CREDENTIALS_TOTP_PERIOD_MIN ||
		    period > CREDENTIALS_TOTP_PERIOD_MAX) {
			snprintf(why, why_size, "totp_period is not %d to %d seconds",
				 CREDENTIALS_TOTP_PERIOD_MIN, CREDENTIALS_TOTP_PERIOD_MAX);
			return -1;
		}
		e->totp->period = period;
		return 0;
	}
	}
}

/* Splits one line (without '\n', NUL-terminated in place) into an entry:
 * "user:hash" and optional ":name=value" fields. Returns 1 for an entry, 0
 * for a blank or comment line, -1 on error. */
static int line_parse(char *line, size_t len, unsigned lineno, const char *name,
		      struct credentials_entry *out, struct errbuf *err)
{
	const char *problem;
	char why[200];
	char *colon, *end, *f;
	unsigned seen = 0;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->expires_day = CREDENTIALS_NEVER;
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (memchr(line, '\0', len) != NULL)
		return errbuf_set(err, "%s:%u: line contains a NUL byte", name, lineno);
	for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	if (i == len || line[i] == '#')
		return 0;
	colon = memchr(line, ':', len);
	if (colon == NULL)
		return errbuf_set(err,
				  "%s:%u: expected USER:HASH, found no ':' "
				  "(create entries with sockgate-passwd)",
				  name, lineno);
	problem = user_problem(line, (size_t)(colon - line));
	if (problem != NULL)
		return errbuf_set(err, "%s:%u: %s", name, lineno, problem);
	*colon = '\0';
	end = line + len;
	out->user = line;
	out->fields = colon + 1;
	out->fields_len = (size_t)(end - out->fields);
	out->line = lineno;
	out->hash = colon + 1;
	/* A locked account: shadow(5)'s '!' before a hash that stays valid, so
	 * unlocking gives the password back. */
	if (out->hash < end && out->hash[0] == '!' && out->hash + 1 < end && out->hash[1] == '$') {
		out->locked = true;
		out->hash++;
	}
	f = memchr(out->hash, ':', (size_t)(end - out->hash));
	out->hash_len = (size_t)((f != NULL ? f : end) - out->hash);
	/* crypt wants the hash as a string; fields is compared by length. */
	if (f != NULL)
		*f = '\0';
	if (hash_check(out->hash, out->hash_len, why, sizeof(why)) == NULL)
		return errbuf_set(err,
				  "%s:%u: user \"%s\": password field %s; set the password "
				  "with sockgate-passwd (yescrypt, bcrypt or sha512-crypt)",
				  name, lineno, out->user, why);
	while (f != NULL) {
		char *next = (char *)credentials_next_field(f + 1, end);
		size_t flen = (size_t)((next != NULL ? next : end) - f - 1);

		if (field_parse(out, f + 1, flen, &seen, why, sizeof(why)) < 0)
			return errbuf_set(err, "%s:%u: user \"%s\": %s", name, lineno, out->user,
					  why);
		f = next;
	}
	if (out->totp != NULL && out->totp->secret_len == 0)
		return errbuf_set(err,
				  "%s:%u: user \"%s\": totp_alg, totp_digits or totp_period "
				  "without a totp secret",
				  name, lineno, out->user);
	if (out->totp != NULL && totp_key_make(out) < 0)
		return errbuf_set(err, "%s:%u: cannot hash the TOTP secret", name, lineno);
	return 1;
}

struct credentials *credentials_parse(const char *name, const char *text, size_t len,
				      struct errbuf *err)
{
	struct credentials *c;
	size_t cap = 0, pos = 0;
	unsigned lineno = 0;
	int rc = 0;

	if (len > CREDENTIALS_MAX_FILE_SIZE) {
		errbuf_set(err, "%s: larger than %u MiB", name, CREDENTIALS_MAX_FILE_SIZE >> 20);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c != NULL) {
		c->refs = 1;
		c->text = malloc(len + 1);
	}
	if (c == NULL || c->text == NULL) {
		errbuf_errno(err, ENOMEM, "%s", name);
		goto fail;
	}
	c->text_size = len + 1;
	if (len > 0)
		memcpy(c->text, text, len);
	c->text[len] = '\0';

	while (pos < len && rc >= 0) {
		char *line = c->text + pos;
		char *nl = memchr(line, '\n', len - pos);
		size_t llen = nl != NULL ? (size_t)(nl - line) : len - pos;

		if (nl != NULL)
			*nl = '\0';
		pos += llen + 1;
		if (++lineno == 0) {
			rc = errbuf_set(err, "%s: too many lines", name);
			break;
		}
		if (c->count == cap) {
			size_t ncap = cap == 0 ? 64 : cap * 2;
			struct credentials_entry *n = reallocarray(c->entries, ncap, sizeof(*n));

			if (n == NULL) {
				rc = errbuf_errno(err, ENOMEM, "%s", name);
				break;
			}
			c->entries = n;
			cap = ncap;
		}
		rc = line_parse(line, llen, lineno, name, &c->entries[c->count], err);
		if (rc > 0)
			c->count++;
		else
			entry_free(&c->entries[c->count]);
	}
	/* Every entry collected so far precedes a failing line, so a duplicate among
	 * them is the earlier problem and is what gets reported. */
	if (entries_sort(c, name, err) < 0 || rc < 0)
		goto fail;
	if (dummy_make(c, name, err) < 0)
		goto fail;
	return c;

fail:
	credentials_unref(c);
	return NULL;
}

struct credentials *credentials_load(const char *path, uid_t owner_uid, struct errbuf *err)
{
	struct credentials *c = NULL;
	struct stat st;
	size_t len = 0;
	char *text = file_read(path, CREDENTIALS_MAX_FILE_SIZE, &st, &len, err);

	if (text == NULL)
		return NULL;
	/* As sshd's StrictModes: what others may change, nobody may trust. */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		errbuf_set(err,
			   "%s: group or others can write it (mode %04o); "
			   "run chmod go-w on it",
			   path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_uid != 0 && st.st_uid != owner_uid) {
		errbuf_set(err, "%s: owned by uid %u; expected root or uid %u", path,
			   (unsigned)st.st_uid, (unsigned)owner_uid);
		goto out;
	}
	c = credentials_parse(path, text, len, err);
	/* A real file's settings are checked once each (a check's cost, at
	 * whatever cost the file chose); credentials_parse() alone, as the fuzzer
	 * calls it, stays cheap. */
	if (c != NULL && settings_check(c, path, err) < 0) {
		credentials_unref(c);
		c = NULL;
	}
out:
	file_free(text, len);
	return c;
}

struct credentials *credentials_ref(struct credentials *c)
{
	if (c != NULL)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void credentials_unref(struct credentials *c)
{
	if (c == NULL)
		return;
	/* Release so this thread's reads happen before the free; acquire so the
	 * freeing thread sees every other holder's reads as finished. */
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (c->text != NULL) {
		/* Hashes are not secrets, but a heap dump need not hand them out. */
		explicit_bzero(c->text, c->text_size);
		free(c->text);
	}
	for (size_t i = 0; i < c->count; i++)
		entry_free(&c->entries[i]);
	free(c->entries);
	free(c->setting_of);
	explicit_bzero(c, sizeof(*c));
	free(c);
}

size_t credentials_count(const struct credentials *c)
{
	return c != NULL ? c->count : 0;
}

size_t credentials_settings(const struct credentials *c, size_t *like_unknown)
{
	if (like_unknown != NULL)
		*like_unknown = c != NULL ? c->dummy_peers : 0;
	return c != NULL ? c->settings : 0;
}

bool credentials_mixed_costs(const struct credentials *c, char *buf, size_t len)
{
	size_t like_unknown, settings = credentials_settings(c, &like_unknown);

	if (settings < 2)
		return false;
	snprintf(buf, len,
		 "%zu different hash methods or costs: only the largest group (%zu of %zu users) "
		 "takes as long to check as an unknown user, and timing tells the others apart",
		 settings, like_unknown, c->count);
	return true;
}

bool credentials_has_user(const struct credentials *c, const char *user)
{
	return c != NULL && user != NULL && entry_find(c, user) != NULL;
}

bool credentials_unchanged(const struct credentials *old_c, const struct credentials *new_c,
			   const char *user)
{
	const struct credentials_entry *a, *b;

	if (old_c == NULL || new_c == NULL || user == NULL)
		return false;
	a = entry_find(old_c, user);
	b = entry_find(new_c, user);
	return a != NULL && b != NULL && a->fields_len == b->fields_len &&
	       memcmp(a->fields, b->fields, a->fields_len) == 0;
}

static bool entry_expired(const struct credentials_entry *e, time_t now)
{
	return (int64_t)(now / 86400) >= e->expires_day;
}

const char *credentials_revoked(const struct credentials *old_c, const struct credentials *new_c,
				const char *user, time_t now)
{
	const struct credentials_entry *a = old_c != NULL ? entry_find(old_c, user) : NULL;
	const struct credentials_entry *b = new_c != NULL ? entry_find(new_c, user) : NULL;

	if (a == NULL || b == NULL)
		return "user removed";
	if (a->hash_len != b->hash_len || memcmp(a->hash, b->hash, a->hash_len) != 0)
		return "password changed";
	if (b->locked)
		return "account locked";
	if (entry_expired(b, now))
		return "account expired";
	if (a->totp != NULL &&
	    (b->totp == NULL || memcmp(a->totp_key, b->totp_key, TOTP_REPLAY_KEY_LEN) != 0))
		return b->totp == NULL ? "second factor removed" : "second factor changed";
	return NULL;
}

bool credentials_access_allows(const struct credentials_access *a, const char *user,
			       const char *groups, size_t groups_len)
{
	for (size_t i = 0; i < a->n_users; i++)
		if (strcmp(a->users[i], user) == 0)
			return true;
	for (size_t i = 0; i < a->n_groups; i++) {
		size_t len = strlen(a->groups[i]);

		for (size_t at = 0; groups != NULL && at < groups_len;) {
			const char *comma = memchr(groups + at, ',', groups_len - at);
			size_t end = comma != NULL ? (size_t)(comma - groups) : groups_len;

			if (end - at == len && memcmp(groups + at, a->groups[i], len) == 0)
				return true;
			at = end + 1;
		}
	}
	return false;
}

bool credentials_user_allowed(const struct credentials *c, const char *user,
			      const struct credentials_access *a)
{
	const struct credentials_entry *e = c != NULL ? entry_find(c, user) : NULL;

	return e != NULL && credentials_access_allows(a, e->user, e->groups, e->groups_len);
}

bool credentials_user_info(const struct credentials *c, const char *user,
			   struct credentials_info *info)
{
	const struct credentials_entry *e = c != NULL && user != NULL ? entry_find(c, user) : NULL;

	memset(info, 0, sizeof(*info));
	if (e == NULL)
		return false;
	info->locked = e->locked;
	info->expires_day = e->expires_day;
	info->has_totp = e->totp != NULL;
	if (e->totp != NULL) {
		info->totp_alg = e->totp->alg;
		info->totp_digits = e->totp->digits;
		info->totp_period = e->totp->period;
	}
	info->groups = e->groups;
	info->groups_len = e->groups_len;
	return true;
}

size_t credentials_user_at(const struct credentials *c, size_t i, const char **user)
{
	if (c == NULL || i >= c->count)
		return 0;
	*user = c->entries[i].user;
	return c->entries[i].line;
}

int credentials_memcmp_ct(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	volatile unsigned char diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= x[i] ^ y[i];
	return diff != 0;
}

/* crypt_r against the user's hash, or the dummy's for an unknown user. True
 * only for the user's own hash and the right password. */
static bool password_matches(const struct credentials *c, const struct credentials_entry *e,
			     const char *password, bool lengths_ok, enum credentials_result *result)
{
	const char *expected = e != NULL ? e->hash : c->dummy;
	size_t expected_len = e != NULL ? e->hash_len : c->dummy_len, plen, out_len;
	struct crypt_data *data;
	bool match = false;
	char *out;
	int diff;

	*result = CREDENTIALS_ERROR;
	/* Allocated per call rather than thread-local: 32 KiB is nothing next to
	 * the hash itself, it is held only while a check runs (no idle copy in
	 * every thread), and it lives off the caller's possibly small stack. */
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return false;
	/* Every path, including an overlong password, hashes a copy of at most
	 * CREDENTIALS_MAX_PASSWORD bytes, so length changes the cost very little.
	 * The copy lives in data->input, which is wiped with the rest of data. */
	plen = strnlen(password, CREDENTIALS_MAX_PASSWORD + 1);
	if (plen > CREDENTIALS_MAX_PASSWORD)
		plen = CREDENTIALS_MAX_PASSWORD;
	memcpy(data->input, password, plen);
	data->input[plen] = '\0';

	out = crypt_r(data->input, expected, data);
	if (out != NULL && out[0] != '*') {
		out_len = strnlen(out, CRYPT_OUTPUT_SIZE);
		/* out is data->output (CRYPT_OUTPUT_SIZE bytes, zeroed by calloc)
		 * and expected_len < CRYPT_OUTPUT_SIZE, so the full-length compare
		 * stays in bounds even when the lengths differ. */
		diff = credentials_memcmp_ct(out, expected, expected_len);
		match = diff == 0 && out_len == expected_len && e != NULL && lengths_ok;
		*result = CREDENTIALS_DENIED;
	}
	explicit_bzero(data, sizeof(*data));
	free(data);
	return match;
}

void credentials_check(const struct credentials *c, const struct credentials_request *req,
		       struct credentials_verdict *v)
{
	const struct credentials_entry *e = NULL;
	enum credentials_result crypt_result;
	const struct totp_params *totp;
	bool lengths_ok, password_ok, code_ok = false;
	uint64_t step = 0;

	memset(v, 0, sizeof(*v));
	v->result = CREDENTIALS_ERROR;
	if (c == NULL || req->user == NULL || req->password == NULL)
		return;
	lengths_ok =
		strnlen(req->user, CREDENTIALS_MAX_USER + 1) <= CREDENTIALS_MAX_USER &&
		strnlen(req->password, CREDENTIALS_MAX_PASSWORD + 1) <= CREDENTIALS_MAX_PASSWORD;
	if (lengths_ok)
		e = entry_find(c, req->user);
	password_ok = password_matches(c, e, req->password, lengths_ok, &crypt_result);
	if (crypt_result == CREDENTIALS_ERROR)
		return;
	/* The code is checked whatever came before, against the dummy secret for
	 * an unknown user or one without a secret: every failure costs the same. */
	if (req->code != NULL) {
		totp = e != NULL && e->totp != NULL ? e->totp : &c->dummy_totp;
		code_ok = totp_check(totp, req->code, req->now, req->totp_window, &step) == 0 &&
			  e != NULL && e->totp != NULL;
	}
	v->result = CREDENTIALS_DENIED;
	if (!password_ok)
		v->why = CREDENTIALS_BAD_PASSWORD;
	else if (e->locked)
		v->why = CREDENTIALS_LOCKED;
	else if (entry_expired(e, req->now))
		v->why = CREDENTIALS_EXPIRED;
	else if (e->n_from > 0 &&
		 (req->peer == NULL || !net_cidrs_contain(e->from, e->n_from, req->peer)))
		v->why = CREDENTIALS_WRONG_NETWORK;
	else if (req->code != NULL && e->totp == NULL)
		v->why = CREDENTIALS_NO_SECOND_FACTOR;
	else if (req->code != NULL && !code_ok)
		v->why = CREDENTIALS_BAD_CODE;
	else if (req->target != NULL &&
		 !credentials_access_allows(req->target, e->user, e->groups, e->groups_len))
		v->why = CREDENTIALS_NOT_PERMITTED;
	else
		v->result = CREDENTIALS_OK;
	if (v->result == CREDENTIALS_OK && req->code != NULL) {
		v->totp_step = step;
		v->totp_period = e->totp->period;
		memcpy(v->totp_key, e->totp_key, TOTP_REPLAY_KEY_LEN);
	}
}

const char *credentials_denial_text(enum credentials_denial why)
{
	switch (why) {
	case CREDENTIALS_BAD_PASSWORD:
		return "bad credentials";
	case CREDENTIALS_LOCKED:
		return "account locked";
	case CREDENTIALS_EXPIRED:
		return "account expired";
	case CREDENTIALS_NO_SECOND_FACTOR:
		return "no second factor enrolled";
	case CREDENTIALS_NOT_PERMITTED:
		return "target not permitted";
	case CREDENTIALS_WRONG_NETWORK:
		return "address not allowed for this user";
	case CREDENTIALS_BAD_CODE:
		return "wrong verification code";
	}
	return "denied";
}

enum credentials_result credentials_verify(const struct credentials *c, const char *user,
					   const char *password)
{
	struct credentials_request req = {.user = user, .password = password, .now = time(NULL)};
	struct credentials_verdict v;

	credentials_check(c, &req, &v);
	/* The password alone: a locked or expired account still has one. */
	if (v.result == CREDENTIALS_DENIED && v.why != CREDENTIALS_BAD_PASSWORD)
		return CREDENTIALS_OK;
	return v.result;
}

struct credentials_slot {
	pthread_mutex_t lock;
	struct credentials *now;
};

struct credentials_slot *credentials_slot_create(struct credentials *c)
{
	struct credentials_slot *slot = calloc(1, sizeof(*slot));

	if (slot == NULL)
		return NULL;
	pthread_mutex_init(&slot->lock, NULL);
	slot->now = credentials_ref(c);
	return slot;
}

void credentials_slot_free(struct credentials_slot *slot)
{
	if (slot == NULL)
		return;
	credentials_unref(slot->now);
	pthread_mutex_destroy(&slot->lock);
	free(slot);
}

void credentials_slot_set(struct credentials_slot *slot, struct credentials *c)
{
	struct credentials *old;

	credentials_ref(c);
	pthread_mutex_lock(&slot->lock);
	old = slot->now;
	slot->now = c;
	pthread_mutex_unlock(&slot->lock);
	credentials_unref(old);
}

struct credentials *credentials_slot_get(struct credentials_slot *slot)
{
	struct credentials *c;

	pthread_mutex_lock(&slot->lock);
	c = credentials_ref(slot->now);
	pthread_mutex_unlock(&slot->lock);
	return c;
}
