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
#include <unistd.h>

#include "file.h"

/* crypt(3)'s base-64 alphabet: every strong method writes its parameters, salt
 * and checksum with these characters only. */
static const char crypt_alphabet[] =
	"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

struct credentials_entry {
	const char *user; /* both point into credentials.text */
	const char *hash;
	size_t hash_len;
	unsigned line;
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
	size_t dummy_peers; /* entries with the method and cost the dummy has */
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
			 "is a locked-account marker ('!' or '*'), which is "
			 "not supported (delete the line to disable the user)");
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

/* Splits one line (without '\n', NUL-terminated in place) into an entry.
 * Returns 1 for an entry, 0 for a blank or comment line, -1 on error. */
static int line_parse(char *line, size_t len, unsigned lineno, const char *name,
		      struct credentials_entry *out, struct errbuf *err)
{
	const char *problem;
	char why[160];
	char *colon;
	size_t i;

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
	out->user = line;
	out->hash = colon + 1;
	out->hash_len = len - (size_t)(colon + 1 - line);
	out->line = lineno;
	if (hash_check(out->hash, out->hash_len, why, sizeof(why)) == NULL)
		return errbuf_set(err,
				  "%s:%u: user \"%s\": password field %s; set the password "
				  "with sockgate-passwd (yescrypt, bcrypt or sha512-crypt)",
				  name, lineno, out->user, why);
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
	return a != NULL && b != NULL && a->hash_len == b->hash_len &&
	       memcmp(a->hash, b->hash, a->hash_len) == 0;
}

int credentials_memcmp_ct(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	volatile unsigned char diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= x[i] ^ y[i];
	return diff != 0;
}

enum credentials_result credentials_verify(const struct credentials *c, const char *user,
					   const char *password)
{
	const struct credentials_entry *e = NULL;
	enum credentials_result result = CREDENTIALS_ERROR;
	struct crypt_data *data;
	const char *expected;
	size_t expected_len, ulen, plen, out_len;
	bool lengths_ok;
	char *out;
	int diff;

	if (c == NULL || user == NULL || password == NULL)
		return CREDENTIALS_ERROR;
	ulen = strnlen(user, CREDENTIALS_MAX_USER + 1);
	plen = strnlen(password, CREDENTIALS_MAX_PASSWORD + 1);
	lengths_ok = ulen <= CREDENTIALS_MAX_USER && plen <= CREDENTIALS_MAX_PASSWORD;
	if (lengths_ok)
		e = entry_find(c, user);
	expected = e != NULL ? e->hash : c->dummy;
	expected_len = e != NULL ? e->hash_len : c->dummy_len;

	/* Allocated per call rather than thread-local: 32 KiB is nothing next to
	 * the hash itself, it is held only while a check runs (no idle copy in
	 * every thread), and it lives off the caller's possibly small stack. */
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return CREDENTIALS_ERROR;
	/* Every path, including an overlong password, hashes a copy of at most
	 * CREDENTIALS_MAX_PASSWORD bytes, so length changes the cost very little.
	 * The copy lives in data->input, which is wiped with the rest of data. */
	if (plen > CREDENTIALS_MAX_PASSWORD)
		plen = CREDENTIALS_MAX_PASSWORD;
	memcpy(data->input, password, plen);
	data->input[plen] = '\0';

	out = crypt_r(data->input, expected, data);
	if (out == NULL || out[0] == '*')
		goto done;
	out_len = strnlen(out, CRYPT_OUTPUT_SIZE);
	/* out is data->output (CRYPT_OUTPUT_SIZE bytes, zeroed by calloc) and
	 * expected_len < CRYPT_OUTPUT_SIZE, so the full-length compare stays in
	 * bounds even when the lengths differ. */
	diff = credentials_memcmp_ct(out, expected, expected_len);
	if (diff == 0 && out_len == expected_len && e != NULL && lengths_ok)
		result = CREDENTIALS_OK;
	else
		result = CREDENTIALS_DENIED;

done:
	explicit_bzero(data, sizeof(*data));
	free(data);
	return result;
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
