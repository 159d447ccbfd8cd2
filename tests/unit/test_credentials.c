/* Unit tests for credentials: file format, hash acceptance, file checks,
 * password verification, snapshots. Timing is measured by the benchmarks, not
 * here. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "credentials.h"

/* Fixed vectors: sha-crypt from Drepper's specification, bcrypt from Openwall's
 * crypt_blowfish tests, scrypt from the escrypt tests; the yescrypt ones are
 * regression vectors made with libxcrypt 4.4.33. */
static const struct {
	const char *hash;
	const char *password;
} vectors[] = {
	{"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEd"
	 "FCoEOfaS35inz1",
	 "Hello world!"},
	{"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"},
	{"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8v"
	 "OuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
	 "Hello world!"},
	{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"$y$j9T$F5Jx5fExrKuPp53xLKQ..1$tnSYvahCwPBHKZUspmcxMfb0.WiB9W.zEaKlOBL35rC", "password"},
	{"$gy$j9T$F5Jx5fExrKuPp53xLKQ..1$Dogv.jai3UfiqXFIeQV0FWiA2xx/QPuuov.EGnMByDD", "password"},
	{"$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D",
	 "pleaseletmein"},
};

static const char *const generated_methods[] = {"$y$", "$2b$", "$6$"};

#define B32_10  "AAAAAAAAAA"
#define B32_109 B32_10 B32_10 B32_10 B32_10 B32_10 B32_10 B32_10 B32_10 B32_10 B32_10 "AAAAAAAAA"

/* A valid hash for text that must not be quoted in messages. */
#define H_Y "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$tnSYvahCwPBHKZUspmcxMfb0.WiB9W.zEaKlOBL35rC"

static void hash_make(const char *prefix, const char *password, char *out, size_t size)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data = calloc(1, sizeof(*data));
	const char *h;

	assert_non_null(data);
	assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)));
	h = crypt_r(password, setting, data);
	assert_non_null(h);
	assert_true(h[0] != '*');
	assert_true(strlen(h) < size);
	strcpy(out, h);
	free(data);
}

/* crypt_r() is wrapped at link time (credentials_tests.cmake) to see which
 * setting the library hashes with; it still hashes. */
static char last_setting[CRYPT_OUTPUT_SIZE];

char *__real_crypt_r(const char *phrase, const char *setting, struct crypt_data *data);
char *__wrap_crypt_r(const char *phrase, const char *setting, struct crypt_data *data);
char *__wrap_crypt_r(const char *phrase, const char *setting, struct crypt_data *data)
{
	snprintf(last_setting, sizeof(last_setting), "%s", setting != NULL ? setting : "");
	return __real_crypt_r(phrase, setting, data);
}

/* A bcrypt hash of password at cost. */
static void bcrypt_make(unsigned cost, const char *password, char *out, size_t size)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data = calloc(1, sizeof(*data));
	const char *h;

	assert_non_null(data);
	assert_non_null(crypt_gensalt_rn("$2b$", cost, NULL, 0, setting, sizeof(setting)));
	h = crypt_r(password, setting, data);
	assert_non_null(h);
	assert_true(strlen(h) < size);
	strcpy(out, h);
	free(data);
}

static struct credentials *parse_str(const char *text, struct errbuf *err)
{
	memset(err, 0, sizeof(*err));
	return credentials_parse("users", text, strlen(text), err);
}

static void test_known_vectors(void **state)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char text[512];
		struct errbuf err;
		struct credentials *c;

		snprintf(text, sizeof(text), "alice:%s\n", vectors[i].hash);
		c = parse_str(text, &err);
		if (c == NULL)
			fail_msg("vector %zu refused: %s", i, err.msg);
		assert_int_equal(credentials_verify(c, "alice", vectors[i].password),
				 CREDENTIALS_OK);
		assert_int_equal(credentials_verify(c, "alice", "wrong"), CREDENTIALS_DENIED);
		assert_int_equal(credentials_verify(c, "bob", vectors[i].password),
				 CREDENTIALS_DENIED);
		credentials_unref(c);
	}
}

static void test_generated_methods(void **state)
{
	for (size_t i = 0; i < sizeof(generated_methods) / sizeof(generated_methods[0]); i++) {
		char ha[CRYPT_OUTPUT_SIZE], hb[CRYPT_OUTPUT_SIZE], text[1024];
		struct errbuf err;
		struct credentials *c;

		hash_make(generated_methods[i], "correct horse", ha, sizeof(ha));
		hash_make(generated_methods[i], "battery staple", hb, sizeof(hb));
		snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", ha, hb);
		c = parse_str(text, &err);
		if (c == NULL)
			fail_msg("%s refused: %s", generated_methods[i], err.msg);
		assert_int_equal(credentials_count(c), 2);
		assert_int_equal(credentials_verify(c, "alice", "correct horse"), CREDENTIALS_OK);
		assert_int_equal(credentials_verify(c, "bob", "battery staple"), CREDENTIALS_OK);
		assert_int_equal(credentials_verify(c, "alice", "battery staple"),
				 CREDENTIALS_DENIED);
		assert_int_equal(credentials_verify(c, "alice", ""), CREDENTIALS_DENIED);
		assert_int_equal(credentials_verify(c, "alice", "correct horse "),
				 CREDENTIALS_DENIED);
		/* Unknown users are hashed against the dummy: denied, not an error. */
		assert_int_equal(credentials_verify(c, "carol", "correct horse"),
				 CREDENTIALS_DENIED);
		assert_int_equal(credentials_verify(c, "", "correct horse"), CREDENTIALS_DENIED);
		credentials_unref(c);
	}
}

/* The length caps: a 255-byte password works; one byte more is denied even
 * when its first 255 bytes are right, so truncation never grants access. */
static void test_length_caps(void **state)
{
	char pw[CREDENTIALS_MAX_PASSWORD + 2], h[CRYPT_OUTPUT_SIZE], text[1024];
	char user[CREDENTIALS_MAX_USER + 2];
	struct errbuf err;
	struct credentials *c;

	memset(pw, 'p', CREDENTIALS_MAX_PASSWORD);
	pw[CREDENTIALS_MAX_PASSWORD] = '\0';
	memset(user, 'u', CREDENTIALS_MAX_USER);
	user[CREDENTIALS_MAX_USER] = '\0';
	hash_make("$6$", pw, h, sizeof(h));
	snprintf(text, sizeof(text), "%s:%s\n", user, h);
	c = parse_str(text, &err);
	if (c == NULL)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(credentials_verify(c, user, pw), CREDENTIALS_OK);
	pw[CREDENTIALS_MAX_PASSWORD] = 'p';
	pw[CREDENTIALS_MAX_PASSWORD + 1] = '\0';
	assert_int_equal(credentials_verify(c, user, pw), CREDENTIALS_DENIED);
	pw[CREDENTIALS_MAX_PASSWORD] = '\0';
	user[CREDENTIALS_MAX_USER] = 'u';
	user[CREDENTIALS_MAX_USER + 1] = '\0';
	assert_int_equal(credentials_verify(c, user, pw), CREDENTIALS_DENIED);
	credentials_unref(c);
}

static void test_null_arguments(void **state)
{
	struct errbuf err;
	struct credentials *c = parse_str("alice:" H_Y "\n", &err);

	assert_non_null(c);
	assert_int_equal(credentials_verify(NULL, "alice", "password"), CREDENTIALS_ERROR);
	assert_int_equal(credentials_verify(c, NULL, "password"), CREDENTIALS_ERROR);
	assert_int_equal(credentials_verify(c, "alice", NULL), CREDENTIALS_ERROR);
	credentials_unref(c);
	credentials_unref(NULL);
}

static const struct {
	const char *text;
	size_t count;
} good_files[] = {
	{"", 0},
	{"\n\n\n", 0},
	{"# only a comment\n", 0},
	{"  \t# indented comment\n \t \n", 0},
	{"#alice:" H_Y "\n", 0},
	{"alice:" H_Y "\n", 1},
	{"alice:" H_Y, 1},                   /* no final newline */
	{"alice:" H_Y "\r\n# c\r\n\r\n", 1}, /* CRLF */
	{"# users\n\nalice:" H_Y "\n\n# more\nbob:" H_Y "\n", 2},
	{"a#b:" H_Y "\nALICE:" H_Y "\nalice:" H_Y "\n", 3}, /* case-sensitive */
	{"u.s-e_r@example.com:" H_Y "\n", 1},
};

static void test_good_files(void **state)
{
	for (size_t i = 0; i < sizeof(good_files) / sizeof(good_files[0]); i++) {
		struct errbuf err;
		struct credentials *c = parse_str(good_files[i].text, &err);

		if (c == NULL)
			fail_msg("file %zu refused: %s", i, err.msg);
		assert_int_equal(credentials_count(c), good_files[i].count);
		if (good_files[i].count > 0)
			assert_true(credentials_verify(c, "alice", "password") == CREDENTIALS_OK ||
				    credentials_has_user(c, "u.s-e_r@example.com"));
		/* An empty file still has a dummy to hash unknown users against. */
		assert_int_equal(credentials_verify(c, "nobody", "password"), CREDENTIALS_DENIED);
		credentials_unref(c);
	}
}

#define LONG_USER                                                                                  \
	"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"    \
	"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"    \
	"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"

_Static_assert(sizeof(LONG_USER) == CREDENTIALS_MAX_USER + 2, "LONG_USER is one byte too long");

/* Each bad file, the text its error must contain and a secret it must not:
 * the password field (or a would-be password) never reaches a message. */
static const struct {
	const char *text;
	const char *expect;
	const char *secret;
} bad_files[] = {
	{"# c\nalice:hunter2\n", "users:2: user \"alice\": password field is not a crypt hash",
	 "hunter2"},
	{"alice:s3cr3t p4ssw0rd\n", "password field is not a crypt hash", "p4ssw0rd"},
	{"alice:$1$abcdefgh$0123456789abcdefghijkl\n",
	 "users:1: user \"alice\": password field "
	 "uses MD5-crypt",
	 "abcdefgh"},
	{"alice:abJnggxhB/yWI\n", "users:1: user \"alice\": password field is a traditional DES",
	 "abJnggxhB"},
	{"alice:hunter2secret\n", "or a plaintext password", "hunter2"},
	{"alice:_J9..CCCCXBrJUJV154M\n", "BSDi extended DES", "CCCCXBrJ"},
	{"alice:$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n", "buggy bcrypt",
	 "CCCCCCCC"},
	{"alice:$9$whatever$Zz\n", "uses an unknown hash method", "whatever"},
	{"\n\nnocolonpassword\n", "users:3: expected USER:HASH", "nocolonpassword"},
	{":" H_Y "\n", "users:1: empty user name", "F5Jx5fEx"},
	{"al ice:" H_Y "\n", "users:1: user name contains whitespace", "al ice"},
	{"\talice:" H_Y "\n", "users:1: user name contains whitespace", "F5Jx5fEx"},
	{"alice\x01:" H_Y "\n", "users:1: user name contains whitespace", "F5Jx5fEx"},
	{"\xc3\xa9lise:" H_Y "\n", "users:1: user name contains", "F5Jx5fEx"},
	{LONG_USER ":" H_Y "\n", "users:1: user name longer than 255 bytes", "F5Jx5fEx"},
	{"alice:" H_Y "\nbob:" H_Y "\n# x\nalice:" H_Y "\n",
	 "users:4: duplicate user \"alice\" (first defined at line 1)", "F5Jx5fEx"},
	{"alice:\n", "users:1: user \"alice\": password field is empty", NULL},
	{"alice:!\n", "password field is a locked-account marker", NULL},
	{"alice:*\n", "password field is a locked-account marker", NULL},
	{"alice:!!" H_Y "\n", "password field is a locked-account marker", "F5Jx5fEx"},
	/* Fields after the hash. */
	{"alice:" H_Y ":colour=blue\n", "users:1: user \"alice\": unknown field \"colour\"",
	 "F5Jx5fEx"},
	{"alice:" H_Y ":expires\n", "is not NAME=VALUE", NULL},
	{"alice:" H_Y ":expires=2030-02-30\n", "expires is not a date YYYY-MM-DD", NULL},
	{"alice:" H_Y ":expires=2030-1-2\n", "expires is not a date", NULL},
	{"alice:" H_Y ":expires=2029-02-29\n", "expires is not a date", NULL},
	{"alice:" H_Y ":expires=2030-01-02:expires=2030-01-03\n", "field \"expires\" given twice",
	 NULL},
	{"alice:" H_Y ":groups=\n", "groups: an empty group list", NULL},
	{"alice:" H_Y ":from=\n", "from: an empty list of networks", NULL},
	{"alice:" H_Y ":from=10.0.0.0/8,,10.1.0.0/16\n", "from: an empty network", NULL},
	{"alice:" H_Y ":from=10.0.0.0/33\n", "from: ", NULL},
	{"alice:" H_Y ":groups=ops,,dev\n", "groups: an empty group name", NULL},
	{"alice:" H_Y ":groups=ops,dev,ops\n", "groups: a group named twice", NULL},
	{"alice:" H_Y ":groups=o p\n", "groups: a group name with a character", NULL},
	{"alice:" H_Y ":totp=JBSWY3DP\n", "totp: the TOTP secret has 5 bytes", "JBSWY3DP"},
	{"alice:" H_Y ":totp=JBSWY3DPEHPK3PX1\n", "totp: the TOTP secret is not base32",
	 "JBSWY3DP"},
	{"alice:" H_Y ":totp_digits=8\n", "without a totp secret", NULL},
	/* Base32 of 109 characters (550 bits: 68 bytes), padded to 112 as
	 * it is decoded: too many bytes, said so (the fuzzer found the padding
	 * overrunning its buffer). */
	{"alice:" H_Y ":totp=" B32_109 "\n", "the TOTP secret has 68 bytes", "AAAAAAAA"},
	{"alice:" H_Y ":totp=JBSWY3DPEHPK3PXP:totp_digits=9\n", "totp_digits is not 6, 7 or 8",
	 "JBSWY3DP"},
	{"alice:" H_Y ":totp=JBSWY3DPEHPK3PXP:totp_alg=MD5\n", "totp_alg is not SHA1", "JBSWY3DP"},
	{"alice:" H_Y ":totp=JBSWY3DPEHPK3PXP:totp_period=5\n", "totp_period is not 10 to 300",
	 "JBSWY3DP"},
	{"alice:$6$\n", "is not a well-formed sha512-crypt hash", NULL},
	{"alice:$6$saltonly\n", "is not a well-formed sha512-crypt hash", "saltonly"},
	{"alice:$y$j9T$F5Jx5fExrKuPp53xLKQ..1$\n", "is not a well-formed yescrypt hash",
	 "F5Jx5fEx"},
	{"alice:" H_Y " \n", "is not a well-formed yescrypt hash", "F5Jx5fEx"},
	{"alice:$2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n",
	 "is not a well-formed bcrypt hash", "CCCCCCCC"},
	{"alice:$6$rounds=$salt$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiB"
	 "FdcbYEdFCoEOfaS35inz1\n",
	 "is not a well-formed sha512-crypt hash", "svn8UoSV"},
	{"alice:$6$rounds=5000$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFd"
	 "cbYEdFCoEOfaS35inz1\n",
	 "is not a well-formed sha512-crypt hash", "svn8UoSV"},
	{"alice:$6$$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfa"
	 "S35inz1\n",
	 "is not a well-formed sha512-crypt hash", "svn8UoSV"},
	/* libxcrypt's own rule for sha-crypt rounds (1000..999999999). */
	{"alice:$6$rounds=999$salt$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTL"
	 "iBFdcbYEdFCoEOfaS35inz1\n",
	 "is not a well-formed sha512-crypt hash", "svn8UoSV"},
	/* The first problem from the top wins, whatever its kind. */
	{"alice:" H_Y "\nalice:" H_Y "\nbob:s3cr3t\n", "users:2: duplicate user", "s3cr3t"},
	{"bob:s3cr3t\nalice:" H_Y "\nalice:" H_Y "\n", "users:1: user \"bob\"", "s3cr3t"},
};

static void test_bad_files(void **state)
{
	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		struct errbuf err;
		struct credentials *c = parse_str(bad_files[i].text, &err);

		if (c != NULL)
			fail_msg("file %zu accepted", i);
		if (strstr(err.msg, bad_files[i].expect) == NULL)
			fail_msg("file %zu: \"%s\" lacks \"%s\"", i, err.msg, bad_files[i].expect);
		if (bad_files[i].secret != NULL && strstr(err.msg, bad_files[i].secret) != NULL)
			fail_msg("file %zu: \"%s\" quotes \"%s\"", i, err.msg, bad_files[i].secret);
		if (strstr(bad_files[i].expect, "password field") != NULL &&
		    strstr(err.msg, "sockgate-passwd") == NULL)
			fail_msg("file %zu: \"%s\" does not mention sockgate-passwd", i, err.msg);
	}
}

/* A second factor, an expiry date, a lock and groups: the check's verdicts,
 * and a code found by its own time step (RFC 6238's SHA-1 vector: secret
 * "12345678901234567890", 59 s, 8 digits: 94287082). */
static void test_fields(void **state)
{
	char text[1024], code[TOTP_DIGITS_MAX + 1];
	struct credentials_request req = {.password = "password", .now = 59, .totp_window = 1};
	struct credentials_verdict v;
	struct credentials_info info;
	struct errbuf err;
	struct credentials *c;
	const char *user;

	snprintf(text, sizeof(text),
		 "alice:%s:totp=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ:totp_digits=8\n"
		 "bob:%s:groups=ops,dev:expires=1970-01-02\n"
		 "carol:!%s:totp=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
		 "dave:%s:expires=2100-01-01\n",
		 H_Y, H_Y, H_Y, H_Y);
	c = parse_str(text, &err);
	assert_non_null(c);

	req.user = "alice";
	req.code = "9428 7082";
	credentials_check(c, &req, &v);
	assert_int_equal(v.result, CREDENTIALS_OK);
	assert_int_equal(v.totp_step, 1); /* 59 s is in the second 30 s step */
	assert_int_equal(v.totp_period, 30);
	req.code = "94287083";
	credentials_check(c, &req, &v);
	assert_int_equal(v.result, CREDENTIALS_DENIED);
	assert_int_equal(v.why, CREDENTIALS_BAD_CODE);
	req.code = "94287082";
	req.password = "wrong";
	credentials_check(c, &req, &v);
	assert_int_equal(v.why, CREDENTIALS_BAD_PASSWORD);
	req.password = "password";
	/* Two steps later the window of 1 no longer reaches it. */
	req.now = 59 + 60;
	credentials_check(c, &req, &v);
	assert_int_equal(v.why, CREDENTIALS_BAD_CODE);
	req.now = 59 + 30;
	credentials_check(c, &req, &v);
	assert_int_equal(v.result, CREDENTIALS_OK);

	/* bob has no secret; on day 1 (1970-01-02) his account is expired. */
	req.user = "bob";
	req.now = 59;
	credentials_check(c, &req, &v);
	assert_int_equal(v.why, CREDENTIALS_NO_SECOND_FACTOR);
	req.code = NULL;
	credentials_check(c, &req, &v);
	assert_int_equal(v.result, CREDENTIALS_OK);
	req.now = 86400;
	credentials_check(c, &req, &v);
	assert_int_equal(v.why, CREDENTIALS_EXPIRED);
	req.user = "carol";
	credentials_check(c, &req, &v);
	assert_int_equal(v.why, CREDENTIALS_LOCKED);
	/* The password of a locked account is still its password. */
	assert_int_equal(credentials_verify(c, "carol", "password"), CREDENTIALS_OK);
	req.user = "nobody";
	credentials_check(c, &req, &v);
	assert_int_equal(v.why, CREDENTIALS_BAD_PASSWORD);

	assert_true(credentials_user_info(c, "bob", &info));
	assert_int_equal(info.groups_len, 7);
	assert_memory_equal(info.groups, "ops,dev", 7);
	assert_false(info.has_totp);
	assert_true(credentials_user_info(c, "alice", &info));
	assert_true(info.has_totp);
	assert_int_equal(info.totp_digits, 8);
	assert_true(credentials_user_info(c, "carol", &info));
	assert_true(info.locked);
	assert_false(credentials_user_info(c, "nobody", &info));
	assert_int_equal(credentials_user_at(c, 3, &user), 4);
	assert_string_equal(user, "dave");

	/* The code oathtool would show at 59 s. */
	{
		struct totp_params p;

		totp_params_default(&p);
		p.digits = 8;
		assert_int_equal(
			totp_secret_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 32, &p, &err), 0);
		assert_int_equal(totp_generate(&p, 59, code), 0);
		assert_string_equal(code, "94287082");
	}
	credentials_unref(c);
}

/* What a reload means for a logged-in user. */
static void test_revoked(void **state)
{
	static const char before[] = "alice:" H_Y ":totp=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
				     "bob:" H_Y "\ncarol:" H_Y "\ndave:" H_Y "\n";
	static const char after[] = "alice:" H_Y "\n"
				    "bob:!" H_Y "\ncarol:" H_Y ":expires=1970-01-01\n"
				    "dave:" H_Y ":groups=new\n";
	struct errbuf err;
	struct credentials *a = parse_str(before, &err), *b = parse_str(after, &err);

	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(credentials_revoked(a, b, "alice", 100), "second factor removed");
	assert_string_equal(credentials_revoked(a, b, "bob", 100), "account locked");
	assert_string_equal(credentials_revoked(a, b, "carol", 100), "account expired");
	assert_null(credentials_revoked(a, b, "dave", 100));
	assert_string_equal(credentials_revoked(a, b, "eve", 100), "user removed");
	assert_false(credentials_unchanged(a, b, "dave"));
	credentials_unref(a);
	credentials_unref(b);
}

static void test_nul_byte(void **state)
{
	static const char text[] = "alice:" H_Y "\nb\0b:" H_Y "\n";
	struct errbuf err;

	assert_null(credentials_parse("users", text, sizeof(text) - 1, &err));
	assert_non_null(strstr(err.msg, "users:2: line contains a NUL byte"));
}

static const struct {
	const char *user;
	bool valid;
} users[] = {
	{"alice", true},    {"a", true},       {"user@example.com", true},
	{"x#y", true},      {"", false},       {"#alice", false},
	{"al ice", false},  {"al:ice", false}, {"al\tice", false},
	{"al\nice", false}, {"\x7f", false},   {"\xc3\xa9", false},
	{LONG_USER, false},
};

static void test_valid_user(void **state)
{
	char max[CREDENTIALS_MAX_USER + 1];
	struct errbuf err;

	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		err.msg[0] = '\0';
		if (credentials_valid_user(users[i].user, &err) != users[i].valid)
			fail_msg("user %zu: expected %s", i, users[i].valid ? "valid" : "invalid");
		assert_true(users[i].valid == (err.msg[0] == '\0'));
	}
	memset(max, 'm', CREDENTIALS_MAX_USER);
	max[CREDENTIALS_MAX_USER] = '\0';
	assert_true(credentials_valid_user(max, NULL));
	assert_false(credentials_valid_user(NULL, NULL));
}

static void test_refcount(void **state)
{
	struct errbuf err;
	struct credentials *c = parse_str("alice:" H_Y "\n", &err);

	assert_non_null(c);
	assert_ptr_equal(credentials_ref(c), c);
	assert_ptr_equal(credentials_ref(c), c);
	credentials_unref(c);
	credentials_unref(c);
	/* Still alive on its last reference (ASan would catch a premature free). */
	assert_int_equal(credentials_count(c), 1);
	assert_true(credentials_has_user(c, "alice"));
	assert_false(credentials_has_user(c, "bob"));
	credentials_unref(c);
	assert_null(credentials_ref(NULL));
}

static void test_unchanged(void **state)
{
	char h2[CRYPT_OUTPUT_SIZE], h3[CRYPT_OUTPUT_SIZE], a[1024], b[1024];
	struct credentials *old_c, *new_c;
	struct errbuf err;

	hash_make("$6$", "two", h2, sizeof(h2));
	hash_make("$6$", "three", h3, sizeof(h3));
	snprintf(a, sizeof(a), "alice:%s\nbob:%s\ndave:%s\n", H_Y, h2, h2);
	snprintf(b, sizeof(b), "# reordered\nbob:%s\nalice:%s\ncarol:%s\n", h3, H_Y, h2);
	old_c = parse_str(a, &err);
	assert_non_null(old_c);
	new_c = parse_str(b, &err);
	assert_non_null(new_c);
	assert_true(credentials_unchanged(old_c, new_c, "alice"));
	assert_false(credentials_unchanged(old_c, new_c, "bob"));   /* new password */
	assert_false(credentials_unchanged(old_c, new_c, "carol")); /* added */
	assert_false(credentials_unchanged(old_c, new_c, "dave"));  /* removed */
	assert_false(credentials_unchanged(old_c, new_c, "eve"));   /* never there */
	assert_true(credentials_unchanged(old_c, old_c, "bob"));
	assert_false(credentials_unchanged(NULL, new_c, "alice"));
	credentials_unref(old_c);
	credentials_unref(new_c);
}

static const struct {
	const char *a, *b;
	size_t len;
	bool equal;
} ct_cases[] = {
	{"", "", 0, true},          {"abc", "abc", 3, true},    {"abc", "abd", 3, false},
	{"xbc", "abc", 3, false},   {"abc", "abd", 2, true},    {"a\0c", "a\0d", 3, false},
	{"\x80", "\x00", 1, false}, {"\xff", "\xfe", 1, false},
};

static void test_memcmp_ct(void **state)
{
	for (size_t i = 0; i < sizeof(ct_cases) / sizeof(ct_cases[0]); i++) {
		int r = credentials_memcmp_ct(ct_cases[i].a, ct_cases[i].b, ct_cases[i].len);

		if ((r == 0) != ct_cases[i].equal)
			fail_msg("case %zu: got %d", i, r);
	}
}

/* Files on disk, for credentials_load's checks. */
struct fixture {
	char dir[64];
	char path[128];
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/test_credentials.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void file_write(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static struct credentials *load_expect(const char *path, uid_t owner, const char *expect)
{
	struct errbuf err = {{0}};
	struct credentials *c = credentials_load(path, owner, &err);

	if (expect == NULL && c == NULL)
		fail_msg("%s refused: %s", path, err.msg);
	if (expect != NULL && c != NULL)
		fail_msg("%s accepted, expected \"%s\"", path, expect);
	if (expect != NULL && strstr(err.msg, expect) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", err.msg, expect);
	return c;
}

static void test_load_modes(void **state)
{
	static const struct {
		mode_t mode;
		const char *expect;
	} modes[] = {
		{0600, NULL},
		{0640, NULL},
		{0644, NULL},
		{0400, NULL},
		{0660, "group or others can write it (mode 0660)"},
		{0664, "group or others can write it (mode 0664)"},
		{0602, "group or others can write it (mode 0602)"},
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct credentials *c;

		file_write(f->path, "alice:" H_Y "\n", modes[i].mode);
		c = load_expect(f->path, getuid(), modes[i].expect);
		if (c != NULL)
			assert_int_equal(credentials_verify(c, "alice", "password"),
					 CREDENTIALS_OK);
		credentials_unref(c);
		assert_int_equal(unlink(f->path), 0);
	}
}

static void test_load_owner(void **state)
{
	struct fixture *f = *state;
	struct credentials *c;

	if (geteuid() != 0)
		test_skip("not root: the ownership checks need files of other owners");
	file_write(f->path, "alice:" H_Y "\n", 0600);
	assert_int_equal(chown(f->path, 12345, 12345), 0);
	load_expect(f->path, 0, "owned by uid 12345; expected root or uid 0");
	load_expect(f->path, 4242, "owned by uid 12345; expected root or uid 4242");
	c = load_expect(f->path, 12345, NULL);
	credentials_unref(c);
	assert_int_equal(chown(f->path, 0, 0), 0);
	c = load_expect(f->path, 12345, NULL); /* root always may own it */
	credentials_unref(c);
}

static void test_load_file_kinds(void **state)
{
	struct fixture *f = *state;
	char other[160];
	struct credentials *c;
	int fd;

	/* A directory, a FIFO (must not hang) and a missing file. */
	assert_int_equal(mkdir(f->path, 0700), 0);
	load_expect(f->path, getuid(), "not a regular file");
	assert_int_equal(rmdir(f->path), 0);
	assert_int_equal(mkfifo(f->path, 0600), 0);
	load_expect(f->path, getuid(), "not a regular file");
	assert_int_equal(unlink(f->path), 0);
	load_expect(f->path, getuid(), "No such file or directory");

	/* A symlink is followed and the target is what gets checked. */
	snprintf(other, sizeof(other), "%s/target", f->dir);
	file_write(other, "alice:" H_Y "\n", 0600);
	assert_int_equal(symlink(other, f->path), 0);
	c = load_expect(f->path, getuid(), NULL);
	credentials_unref(c);
	assert_int_equal(chmod(other, 0666), 0);
	load_expect(f->path, getuid(), "group or others can write it");
	assert_int_equal(unlink(f->path), 0);

	/* Over the size cap (sparse, so the test stays cheap). */
	fd = open(f->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)CREDENTIALS_MAX_FILE_SIZE + 1), 0);
	close(fd);
	load_expect(f->path, getuid(), "larger than 16 MiB");
}

static void test_load_parse_error(void **state)
{
	struct fixture *f = *state;

	file_write(f->path, "alice:" H_Y "\nbob:s3cr3t-pass\n", 0600);
	load_expect(f->path, getuid(), ":2: user \"bob\": password field is not a crypt hash");
	/* Well-formed to the eye, but libxcrypt cannot use it: as the dummy's
	 * setting it would make unknown users' checks fail unlike a wrong
	 * password's, and it fails every check of its user. */
	file_write(f->path,
		   "bob:$y$$abcdefghijklmnopqrstuv$ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq\n",
		   0600);
	load_expect(f->path, getuid(),
		    ":1: user \"bob\": the hash has parameters libxcrypt cannot use");
	/* The same hash on a user who is not the dummy's model (two users share
	 * another setting) is refused too. */
	file_write(f->path,
		   "alice:" H_Y "\ncarol:" H_Y "\n"
		   "bob:$y$$abcdefghijklmnopqrstuv$ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq\n",
		   0600);
	load_expect(f->path, getuid(),
		    ":3: user \"bob\": the hash has parameters libxcrypt cannot use");
}

/* Hashes an unknown user and returns the method and cost it was hashed with
 * ("$2b$05$"), from the setting crypt_r() was given. */
static const char *unknown_user_cost(const struct credentials *c)
{
	static char cost[16];

	last_setting[0] = '\0';
	assert_int_equal(credentials_verify(c, "nobody", "guess"), CREDENTIALS_DENIED);
	assert_true(strlen(last_setting) > 7);
	memcpy(cost, last_setting, 7);
	cost[7] = '\0';
	return cost;
}

/* Parses text and checks its count of settings and of users in the largest. */
static struct credentials *parse_settings(const char *text, size_t settings, size_t like)
{
	struct errbuf err;
	struct credentials *c = parse_str(text, &err);
	size_t n_like;
	char what[256];

	if (c == NULL)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(credentials_settings(c, &n_like), settings);
	assert_int_equal(n_like, like);
	/* The warning text, only when there is something to warn of. */
	assert_int_equal(credentials_mixed_costs(c, what, sizeof(what)), settings > 1);
	if (settings > 1)
		assert_non_null(strstr(what, "different hash methods or costs"));
	return c;
}

/* Users on several hash costs: unknown users are hashed at the cost most
 * users share, not the first line's (after a migration the first lines are
 * the oldest), and the earliest line's on a tie. */
static void test_unknown_user_cost_follows_most_users(void **state)
{
	char h4a[CRYPT_OUTPUT_SIZE], h4b[CRYPT_OUTPUT_SIZE], h5a[CRYPT_OUTPUT_SIZE];
	char h5b[CRYPT_OUTPUT_SIZE], h5c[CRYPT_OUTPUT_SIZE], text[5 * CRYPT_OUTPUT_SIZE];
	struct credentials *c;

	(void)state;
	bcrypt_make(4, "pw-a", h4a, sizeof(h4a));
	bcrypt_make(4, "pw-b", h4b, sizeof(h4b));
	bcrypt_make(5, "pw-c", h5a, sizeof(h5a));
	bcrypt_make(5, "pw-d", h5b, sizeof(h5b));
	bcrypt_make(5, "pw-e", h5c, sizeof(h5c));

	/* One old user first, three on the new cost. */
	snprintf(text, sizeof(text), "old:%s\nc:%s\nd:%s\ne:%s\n", h4a, h5a, h5b, h5c);
	c = parse_settings(text, 2, 3);
	assert_string_equal(unknown_user_cost(c), "$2b$05$");
	/* The real users still check at their own cost. */
	assert_int_equal(credentials_verify(c, "old", "pw-a"), CREDENTIALS_OK);
	assert_int_equal(credentials_verify(c, "d", "pw-d"), CREDENTIALS_OK);
	credentials_unref(c);

	/* A tie: the cost of the earliest line ("b", on line 2), not of the user
	 * first by name ("a"). */
	snprintf(text, sizeof(text), "# users\nb:%s\nc:%s\na:%s\nd:%s\n", h5a, h4a, h4b, h5b);
	c = parse_settings(text, 2, 2);
	assert_string_equal(unknown_user_cost(c), "$2b$05$");
	credentials_unref(c);

	/* One cost: one setting, shared by every user. */
	snprintf(text, sizeof(text), "a:%s\nb:%s\n", h4a, h4b);
	c = parse_settings(text, 1, 2);
	assert_string_equal(unknown_user_cost(c), "$2b$04$");
	credentials_unref(c);

	/* No users: nothing to tell apart. */
	c = parse_settings("# nobody yet\n", 0, 0);
	credentials_unref(c);
}

/* Method and cost are what is compared, not the salt: sha512-crypt with and
 * without explicit rounds, and yescrypt at one cost with two salts. */
static void test_settings_count_methods_and_costs(void **state)
{
	static const char text[] =
		"a:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/"
		"O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEd"
		"FCoEOfaS35inz1\n"
		"b:$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/"
		"UrjmM0Dp8v"
		"OuZeHBy/YTBmSK6H9qs/y3RnOaw5v.\n"
		"c:" H_Y "\n"
		"d:$y$j9T$F5Jx5fExrKuPp53xLKQ..0$tnSYvahCwPBHKZUspmcxMfb0.WiB9W.zEaKlOBL35rC\n";

	(void)state;
	credentials_unref(parse_settings(text, 3, 2));
}

/* Spellings of one method and cost count as one setting; a salt never
 * matters; another cost is another setting. */
static void test_settings_equal_costs(void **state)
{
#define D6 "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
#define D5 "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
#define BC "CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
#define GY "Dogv.jai3UfiqXFIeQV0FWiA2xx/QPuuov.EGnMByDD"
#define SC "kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D"
	static const struct {
		const char *text;
		size_t settings;
	} cases[] = {
		{"a:$2a$05$" BC "\nb:$2b$05$" BC "\nc:$2y$05$" BC "\n", 1},
		{"a:$2b$05$" BC "\nb:$2b$06$" BC "\n", 2},
		{"a:$6$saltstring$" D6 "\nb:$6$rounds=5000$saltstrinG$" D6 "\n", 1},
		{"a:$6$saltstring$" D6 "\nb:$6$rounds=5001$saltstring$" D6 "\n", 2},
		{"a:$5$saltstring$" D5 "\nb:$5$rounds=5000$other$" D5 "\n", 1},
		{"a:$5$saltstring$" D5 "\nb:$6$saltstring$" D6 "\n", 2},
		{"a:$gy$j9T$F5Jx5fExrKuPp53xLKQ..1$" GY "\nb:$gy$j9T$F5Jx5fExrKuPp53xLKQ..0$" GY
		 "\n",
		 1},
		{"a:$gy$j9T$F5Jx5fExrKuPp53xLKQ..1$" GY "\nb:$gy$j8T$F5Jx5fExrKuPp53xLKQ..1$" GY
		 "\n",
		 2},
		{"a:$7$C6..../....SodiumChloride$" SC "\nb:$7$C6..../....SodiumChloridf$" SC "\n",
		 1},
		{"a:$7$C6..../....SodiumChloride$" SC "\nb:$7$D6..../....SodiumChloride$" SC "\n",
		 2},
	};
#undef D6
#undef D5
#undef BC
#undef GY
#undef SC
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct errbuf err;
		struct credentials *c = parse_str(cases[i].text, &err);
		size_t like;

		if (c == NULL)
			fail_msg("case %zu refused: %s", i, err.msg);
		if (credentials_settings(c, &like) != cases[i].settings)
			fail_msg("case %zu: %zu settings, expected %zu", i,
				 credentials_settings(c, NULL), cases[i].settings);
		assert_int_equal(like, cases[i].settings == 1 ? credentials_count(c) : 1);
		credentials_unref(c);
	}
}

/* Many users: the lookup must find each, and loading must stay fast enough
 * for ctest's timeout even under the sanitizers. */
static void test_many_users(void **state)
{
	enum { N = 100000 };
	size_t cap = (size_t)N * 100, len = 0;
	char *text = malloc(cap);
	struct errbuf err;
	struct credentials *c;
	char name[32];

	assert_non_null(text);
	for (int i = N - 1; i >= 0; i--)
		len += (size_t)snprintf(text + len, cap - len, "user%d:%s\n", i, H_Y);
	c = credentials_parse("users", text, len, &err);
	if (c == NULL)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(credentials_count(c), N);
	for (int i = 0; i < N; i += 997) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_true(credentials_has_user(c, name));
	}
	assert_false(credentials_has_user(c, "user100000"));
	assert_false(credentials_has_user(c, "user"));
	assert_int_equal(credentials_verify(c, "user31337", "password"), CREDENTIALS_OK);
	credentials_unref(c);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_generated_methods),
		cmocka_unit_test(test_length_caps),
		cmocka_unit_test(test_null_arguments),
		cmocka_unit_test(test_good_files),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_valid_user),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_unchanged),
		cmocka_unit_test(test_memcmp_ct),
		cmocka_unit_test_setup_teardown(test_load_modes, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_load_owner, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_load_file_kinds, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_load_parse_error, fixture_setup,
						fixture_teardown),
		cmocka_unit_test(test_many_users),
		cmocka_unit_test(test_unknown_user_cost_follows_most_users),
		cmocka_unit_test(test_settings_count_methods_and_costs),
		cmocka_unit_test(test_settings_equal_costs),
	};

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
