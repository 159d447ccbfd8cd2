/* fuzz_credentials: credentials_parse() on arbitrary bytes. A file it accepts is
 * cross-checked (entry count, every user found with its fields, unchanged and
 * not revoked against itself but for a lock or an expiry) and passwords (and
 * verification codes) are checked when the hash is cheap enough for a run to
 * stay fast; the input chooses the user, password and code in comment lines
 * ("# user: NAME", "# password: TEXT", "# code: DIGITS"), which the parser
 * ignores. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"

#define NAME "fuzz-users"
/* yescrypt and scrypt blocks (128 * r bytes each) a check may touch: 2^14 is
 * about 2 MiB and 1.5 ms, like bcrypt cost 5 and sha-crypt's 5000 rounds. The
 * defaults (yescrypt j9T: 2^17, ~14 ms) are what the unit tests cover. */
#define MAX_BLOCKS (1u << 14)
#define MAX_ROUNDS 5000
#define MAX_BCRYPT 5
#define USER_HINT  "# user: "
#define PASS_HINT  "# password: "
#define CODE_HINT  "# code: "
#define UNKNOWN    "no such user" /* a space: never a valid name */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct view {
	const char *p;
	size_t len;
};

/* The parser's own line rules: split at LF, drop one trailing CR. */
static bool next_line(const char *text, size_t size, size_t *pos, struct view *line)
{
	const char *nl;

	if (*pos >= size)
		return false;
	line->p = text + *pos;
	nl = memchr(line->p, '\n', size - *pos);
	line->len = nl != NULL ? (size_t)(nl - line->p) : size - *pos;
	*pos += line->len + 1;
	if (line->len > 0 && line->p[line->len - 1] == '\r')
		line->len--;
	return true;
}

/* In an accepted file, every line that is not blank or a comment is an entry. */
static bool is_entry(struct view line)
{
	size_t i = 0;

	while (i < line.len && (line.p[i] == ' ' || line.p[i] == '\t'))
		i++;
	return i < line.len && line.p[i] != '#';
}

/* The next entry line's user name and hash; false at the end. */
static bool next_entry(const char *text, size_t size, size_t *pos, struct view *name,
		       struct view *hash)
{
	struct view line;

	while (next_line(text, size, pos, &line)) {
		const char *colon;

		if (!is_entry(line) || (colon = memchr(line.p, ':', line.len)) == NULL)
			continue;
		*name = (struct view){line.p, (size_t)(colon - line.p)};
		*hash = (struct view){colon + 1, line.len - (size_t)(colon + 1 - line.p)};
		/* The hash alone: no lock mark before it, no fields after it. */
		if (hash->len > 1 && hash->p[0] == '!' && hash->p[1] == '$') {
			hash->p++;
			hash->len--;
		}
		if ((colon = memchr(hash->p, ':', hash->len)) != NULL)
			hash->len = (size_t)(colon - hash->p);
		return true;
	}
	return false;
}

static bool has_prefix(struct view v, const char *prefix)
{
	return v.len >= strlen(prefix) && memcmp(v.p, prefix, strlen(prefix)) == 0;
}

/* crypt(3)'s base-64 digit value, or 64. */
static unsigned a64(char c)
{
	if (c == '.' || c == '/')
		return (unsigned)(c - '.');
	if (c >= '0' && c <= '9')
		return (unsigned)(c - '0') + 2;
	if (c >= 'A' && c <= 'Z')
		return (unsigned)(c - 'A') + 12;
	if (c >= 'a' && c <= 'z')
		return (unsigned)(c - 'a') + 38;
	return 64;
}

/* $7$: N as one digit (log2), then r and p as five digits (30 bits) each. */
static bool scrypt_cheap(const char *s, size_t len)
{
	unsigned n_log2, r = 0, p = 0;

	if (len < 11)
		return false;
	n_log2 = a64(s[0]);
	for (int i = 4; i >= 0; i--) {
		r = (r << 6) | a64(s[1 + i]);
		p = (p << 6) | a64(s[6 + i]);
	}
	return n_log2 <= 14 && r >= 1 && r <= MAX_BLOCKS && p >= 1 && p <= MAX_BLOCKS &&
	       ((uint64_t)1 << n_log2) * r * p <= MAX_BLOCKS;
}

/* $y$ and $gy$: flavour, log2(N) - 1 and r - 1 as one digit each (below 48) and
 * nothing else (no p, t, g or ROM, which only add cost); anything longer is
 * treated as expensive. */
static bool yescrypt_cheap(const char *s, size_t len)
{
	const char *end = memchr(s, '$', len);
	unsigned n_log2, r;

	if (end == NULL || end - s != 3 || a64(s[0]) > 47 || a64(s[1]) > 47 || a64(s[2]) > 47)
		return false;
	n_log2 = a64(s[1]) + 1;
	r = a64(s[2]) + 1;
	return n_log2 <= 14 && ((uint64_t)1 << n_log2) * r <= MAX_BLOCKS;
}

static bool sha_cheap(const char *s, size_t len)
{
	unsigned long rounds = 0;
	size_t i = 7;

	if (len < 7 || memcmp(s, "rounds=", 7) != 0)
		return true; /* the default, 5000 */
	for (; i < len && i < 7 + 9 && s[i] >= '0' && s[i] <= '9'; i++)
		rounds = rounds * 10 + (unsigned long)(s[i] - '0');
	return i < len && s[i] == '$' && rounds <= MAX_ROUNDS;
}

/* True when checking a password against hash costs a few milliseconds at most.
 * The hash passed credentials_parse(), so its method prefix is a known one. */
static bool hash_cheap(struct view h)
{
	if (has_prefix(h, "$y$"))
		return yescrypt_cheap(h.p + 3, h.len - 3);
	if (has_prefix(h, "$gy$"))
		return yescrypt_cheap(h.p + 4, h.len - 4);
	if (has_prefix(h, "$7$"))
		return scrypt_cheap(h.p + 3, h.len - 3);
	if (has_prefix(h, "$2b$") || has_prefix(h, "$2y$") || has_prefix(h, "$2a$"))
		return h.len > 6 && h.p[4] >= '0' && h.p[4] <= '9' && h.p[5] >= '0' &&
		       h.p[5] <= '9' && (h.p[4] - '0') * 10 + (h.p[5] - '0') <= MAX_BCRYPT;
	if (has_prefix(h, "$6$") || has_prefix(h, "$5$"))
		return sha_cheap(h.p + 3, h.len - 3);
	return false;
}

/* credentials_parse() does not decode the yescrypt/scrypt parameters and salt
 * ("$y$$salt$digest", or a salt whose last digit has stray bits), so a hash
 * crypt_r() refuses is accepted and every check against it (and, when the
 * dummy copies its setting, every unknown user's) ends in CREDENTIALS_ERROR.
 * credentials_load() hashes once with each distinct setting and refuses bad
 * parameters; a bad salt on a user whose setting another user shares is still
 * loaded (KNOWN GAP), and the parse alone checks nothing. */
static bool setting_unchecked(struct view h)
{
	return has_prefix(h, "$y$") || has_prefix(h, "$gy$") || has_prefix(h, "$7$");
}

/* Whether every entry's hash satisfies pred (any, with want false). */
static bool every_entry(const char *text, size_t size, bool (*pred)(struct view), bool want)
{
	size_t pos = 0;
	struct view name, hash;

	while (next_entry(text, size, &pos, &name, &hash))
		if (pred(hash) != want)
			return false;
	return true;
}

static char *copy_z(struct view v)
{
	char *s = malloc(v.len + 1);

	if (s == NULL)
		abort();
	memcpy(s, v.p, v.len);
	s[v.len] = '\0';
	return s;
}

static void fail(const char *what, const char *user)
{
	fprintf(stderr, "fuzz_credentials: %s (user \"%s\")\n", what, user);
	abort();
}

/* What an accepted file must agree with: the parser's count, and every entry
 * found by name and unchanged against its own snapshot. */
static void check_entries(const struct credentials *c, const char *text, size_t size)
{
	size_t pos = 0, entries = 0;
	struct view line;

	while (next_line(text, size, &pos, &line)) {
		const char *colon;
		char *user;

		if (!is_entry(line))
			continue;
		entries++;
		colon = memchr(line.p, ':', line.len);
		if (colon == NULL)
			fail("accepted an entry without ':'", "");
		user = copy_z((struct view){line.p, (size_t)(colon - line.p)});
		if (!credentials_valid_user(user, NULL))
			fail("accepted an invalid user name", user);
		if (!credentials_has_user(c, user))
			fail("an entry's user is not found", user);
		if (!credentials_unchanged(c, c, user))
			fail("an entry is not unchanged against itself", user);
		{
			struct credentials_info info;
			const char *why = credentials_revoked(c, c, user, 0);

			if (!credentials_user_info(c, user, &info))
				fail("an entry has no info", user);
			if ((info.groups == NULL) != (info.groups_len == 0))
				fail("groups and their length disagree", user);
			if (why != NULL && strcmp(why, "account locked") != 0 &&
			    strcmp(why, "account expired") != 0)
				fail("an entry is revoked against itself", user);
			if (why != NULL && strcmp(why, "account locked") == 0 && !info.locked)
				fail("revoked as locked but not locked", user);
		}
		free(user);
	}
	if (entries != credentials_count(c)) {
		fprintf(stderr, "fuzz_credentials: %zu entry lines, count %zu\n", entries,
			credentials_count(c));
		abort();
	}
	if (credentials_has_user(c, UNKNOWN) || credentials_unchanged(c, c, UNKNOWN))
		fail("an invalid name is found", UNKNOWN);
	/* Settings: none without users, else 1..count, the largest group
	 * 1..count, and everyone in it when there is one setting. */
	{
		size_t like, settings = credentials_settings(c, &like);

		if (entries == 0 ? settings != 0 || like != 0
				 : settings < 1 || settings > entries || like < 1 ||
					   like > entries || (settings == 1 && like != entries) ||
					   like < (entries + settings - 1) / settings)
			fail("settings and the largest group do not add up", "");
	}
}

/* The entry of user (the first entry when user is NULL); false if none. */
static bool find_entry(const char *text, size_t size, const char *user, struct view *name,
		       struct view *hash)
{
	size_t pos = 0;

	while (next_entry(text, size, &pos, name, hash))
		if (user == NULL ||
		    (name->len == strlen(user) && memcmp(name->p, user, name->len) == 0))
			return true;
	return false;
}

/* The last "# user: " / "# password: " comment, or NULL. */
static char *hint(const char *text, size_t size, const char *prefix)
{
	struct view line, found = {NULL, 0};
	size_t pos = 0;

	while (next_line(text, size, &pos, &line)) {
		if (has_prefix(line, prefix))
			found = (struct view){line.p + strlen(prefix), line.len - strlen(prefix)};
	}
	return found.p != NULL ? copy_z(found) : NULL;
}

static void check_verify(const struct credentials *c, const char *text, size_t size)
{
	char *user = hint(text, size, USER_HINT), *password = hint(text, size, PASS_HINT);
	struct view first_user, first, own_user, own;
	enum credentials_result r;
	bool known, all_cheap, any_unchecked;
	size_t n;

	if (password == NULL)
		password = copy_z((struct view){"", 0});
	/* An empty file's dummy is the preferred method at its default cost. */
	if (!find_entry(text, size, NULL, &first_user, &first))
		goto out;
	if (user == NULL)
		user = copy_z(first_user);
	/* Unknown users, and overlong names and passwords, are hashed against a
	 * dummy with the setting of one of the entries (most users' method and
	 * cost): cheap when all are, refused only if one may be unusable. */
	known = find_entry(text, size, user, &own_user, &own) &&
		strlen(user) <= CREDENTIALS_MAX_USER &&
		strlen(password) <= CREDENTIALS_MAX_PASSWORD;
	all_cheap = every_entry(text, size, hash_cheap, true);
	any_unchecked = !every_entry(text, size, setting_unchecked, false);
	if (known ? hash_cheap(own) : all_cheap) {
		r = credentials_verify(c, user, password);
		if (r == CREDENTIALS_ERROR && !(known ? setting_unchecked(own) : any_unchecked))
			fail("an accepted hash cannot be checked", user);
		if (r == CREDENTIALS_OK && !credentials_has_user(c, user))
			fail("an unknown user logged in", user);
		/* Beyond the cap, password and password + "x" are the same. */
		n = strlen(password);
		if (r == CREDENTIALS_OK && n < CREDENTIALS_MAX_PASSWORD) {
			char *wrong = malloc(n + 2);

			if (wrong == NULL)
				abort();
			memcpy(wrong, password, n);
			memcpy(wrong + n, "x", 2);
			if (credentials_verify(c, user, wrong) != CREDENTIALS_DENIED)
				fail("a wrong password is not denied", user);
			free(wrong);
		}
	}
	/* A code, checked against the user's secret (or the dummy) at a fixed
	 * time: any parameters the parser accepted must be usable. */
	if (known ? hash_cheap(own) : all_cheap) {
		char *code = hint(text, size, CODE_HINT);
		struct credentials_request req = {.user = user,
						  .password = password,
						  .code = code != NULL ? code : "000000",
						  .totp_window = 1,
						  .now = 1000000000};
		struct credentials_verdict v;

		credentials_check(c, &req, &v);
		if (v.result == CREDENTIALS_OK && !known)
			fail("an unknown user passed with a code", user);
		if (v.result == CREDENTIALS_OK && v.totp_period == 0)
			fail("a code passed without a period", user);
		free(code);
	}
	if (all_cheap) {
		r = credentials_verify(c, UNKNOWN, password);
		if (r != CREDENTIALS_DENIED && !(r == CREDENTIALS_ERROR && any_unchecked))
			fail("an invalid user name is not denied", UNKNOWN);
	}
out:
	free(user);
	free(password);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errbuf err = {{0}};
	struct credentials *c;
	char *text;

	/* A private NUL-terminated copy for the harness's own string handling; the
	 * parser gets the exact bytes and length. */
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	c = credentials_parse(NAME, (const char *)data, size, &err);
	if (c == NULL) {
		if (strncmp(err.msg, NAME ":", strlen(NAME ":")) != 0) {
			fprintf(stderr, "fuzz_credentials: message without the file name: %s\n",
				err.msg);
			abort();
		}
	} else {
		if (memchr(data, '\0', size) != NULL)
			fail("accepted a file with a NUL byte", "");
		check_entries(c, text, size);
		check_verify(c, text, size);
		credentials_unref(credentials_ref(c));
		credentials_unref(c);
	}
	free(text);
	return 0;
}
