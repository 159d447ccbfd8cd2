/* credentials: an immutable, reference-counted snapshot of a credentials file
 * ("user:crypt-hash" lines, with optional fields: a TOTP secret, an expiry
 * date, groups; a '!' before the hash locks the account) and the check of a
 * login against it. The check is slow by design (yescrypt, bcrypt,
 * sha512-crypt), so the daemon calls it off the event loop (see auth.h); this
 * module itself is thread-safe and blocking. */
#ifndef SOCKGATE_CREDENTIALS_H
#define SOCKGATE_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "errbuf.h"
#include "totp.h"

#define CREDENTIALS_MAX_USER 255 /* bytes in a user name */
/* Bytes of a password that are checked. A check's cost grows with the
 * password's length (sha512-crypt at 200,000 rounds: 78 ms for 8 bytes, 359 ms
 * for 255), so the length an attacker may choose is bounded: a longer password
 * is checked, as a wrong one, against the unknown users' dummy at this length. */
#define CREDENTIALS_MAX_PASSWORD    128
#define CREDENTIALS_MAX_FILE_SIZE   (16u << 20) /* bytes in a credentials file */
#define CREDENTIALS_MAX_GROUP       64          /* bytes in a group name */
#define CREDENTIALS_MAX_GROUPS      64          /* groups of one user */
#define CREDENTIALS_TOTP_PERIOD_MIN 10          /* seconds per TOTP time step */
#define CREDENTIALS_TOTP_PERIOD_MAX 300
#define CREDENTIALS_NEVER           INT64_MAX /* an expiry date that never comes */
#define CREDENTIALS_MAX_FROM        32        /* networks in one from= field */

struct credentials;

enum credentials_result {
	CREDENTIALS_OK = 0,
	CREDENTIALS_DENIED = 1, /* unknown user or wrong password: never says which */
	CREDENTIALS_ERROR = 2,  /* crypt failed: the check could not be made */
};

/* Loads path, refusing (as sshd's StrictModes does) a file that group or others
 * can write, or that is owned by neither root nor owner_uid (the daemon's user),
 * and a file that is not a regular file. Every line must be empty, a # comment,
 * or "user:hash[:field]..." with a hash libxcrypt can check and that names a
 * known strong method ($y$ yescrypt, $gy$ gost-yescrypt, $7$ scrypt,
 * $2b$/$2y$/$2a$ bcrypt, $6$ sha512-crypt, $5$ sha256-crypt), '!' before it for
 * a locked account, and fields "expires=YYYY-MM-DD", "groups=a,b", "from=RANGES",
 * "totp=BASE32", "totp_alg=SHA1|SHA256|SHA512", "totp_digits=6|7|8",
 * "totp_period=SECONDS"; a plaintext or unknown hash, a bad field, a duplicate
 * user or an invalid user name is refused with "FILE:LINE: problem".
 * Returns a snapshot with one reference, or NULL with err filled in. */
struct credentials *credentials_load(const char *path, uid_t owner_uid, struct errbuf *err);

/* Parses text as a credentials file named name (no file checks). */
struct credentials *credentials_parse(const char *name, const char *text, size_t len,
				      struct errbuf *err);

struct credentials *credentials_ref(struct credentials *c);
void credentials_unref(struct credentials *c);

size_t credentials_count(const struct credentials *c);

/* How many distinct hash methods and costs the entries use (spellings of one
 * cost, such as bcrypt's $2a$ and $2b$, count once); like_unknown gets how many
 * entries share the one unknown users are checked with. More than one means a
 * check's time tells groups of users apart. */
size_t credentials_settings(const struct credentials *c, size_t *like_unknown);

/* When users have more than one method or cost, writes what that means
 * ("2 different hash methods or costs: only the largest group ...") to buf for
 * a warning, and returns true. */
bool credentials_mixed_costs(const struct credentials *c, char *buf, size_t len);

/* What a login asks of the credentials. */
struct credentials_request {
	const char *user, *password;
	const char *code;     /* the verification code, or NULL: the gateway asks none */
	unsigned totp_window; /* time steps accepted either side of now */
	time_t now;
	/* With a target chosen at the username prompt: who may reach it (its
	 * users, and users in its groups). Not permitted fails like the rest. */
	const struct credentials_access *target;
	const struct sockaddr *peer; /* the client, for from= (NULL: unknown) */
};

/* Who may reach something: these users, and members of these groups. */
struct credentials_access {
	char *const *users;
	size_t n_users;
	char *const *groups;
	size_t n_groups;
};

/* Why a login was denied: for the log only, never for the client. */
enum credentials_denial {
	CREDENTIALS_BAD_PASSWORD = 0, /* unknown user or wrong password */
	CREDENTIALS_LOCKED,
	CREDENTIALS_EXPIRED,
	CREDENTIALS_NO_SECOND_FACTOR, /* a code was asked, the user has no secret */
	CREDENTIALS_BAD_CODE,
	CREDENTIALS_NOT_PERMITTED, /* the target named is not the user's */
	CREDENTIALS_WRONG_NETWORK, /* the client is outside the user's from= networks */
};

struct credentials_verdict {
	enum credentials_result result;
	enum credentials_denial why; /* when DENIED */
	/* On success with a code: the time step it matched, and the key that
	 * names the user's secret, for the replay table (totp.h). */
	uint64_t totp_step;
	unsigned totp_period;
	unsigned char totp_key[TOTP_REPLAY_KEY_LEN];
};

/* Checks a login: the password, then, if req->code, the code within the
 * window. An unknown user is hashed against a dummy with the method and cost
 * most entries share (the earliest line's on a tie), and a code is checked
 * against a dummy secret for a user without one, so every failure (unknown
 * user, wrong password, locked, expired, no secret, wrong code) costs what a
 * wrong password costs; comparisons are constant-time. Intermediate copies of
 * the password and hash are wiped before returning. */
void credentials_check(const struct credentials *c, const struct credentials_request *req,
		       struct credentials_verdict *v);
/* "bad credentials", "account locked", ... */
const char *credentials_denial_text(enum credentials_denial why);

/* The password alone (sockgate-passwd -v): OK even for a locked or expired
 * account, whose password it is. */
enum credentials_result credentials_verify(const struct credentials *c, const char *user,
					   const char *password);

/* True if user exists in both snapshots with the same line after the name:
 * a check that raced a reload is made again otherwise. */
bool credentials_unchanged(const struct credentials *old_c, const struct credentials *new_c,
			   const char *user);

/* Why a session of user, logged in against old_c, may not go on under new_c at
 * now ("user removed", "password changed", "account locked", "account
 * expired", "second factor removed" or "changed"), or NULL: for
 * revoke_on_reload. */
const char *credentials_revoked(const struct credentials *old_c, const struct credentials *new_c,
				const char *user, time_t now);

/* A user's fields, for sockgate-passwd -l and the routing of later issues. */
struct credentials_info {
	bool locked;
	int64_t expires_day; /* days since 1970-01-01, or CREDENTIALS_NEVER */
	bool has_totp;
	enum totp_alg totp_alg;
	unsigned totp_digits, totp_period;
	const char *groups; /* "a,b" (not NUL-terminated), or NULL */
	size_t groups_len;
};
/* False if user has no entry. */
bool credentials_user_info(const struct credentials *c, const char *user,
			   struct credentials_info *info);
/* The i-th user in name order, and its line (0 past the end). */
size_t credentials_user_at(const struct credentials *c, size_t i, const char **user);

/* Whether user (with the groups in groups, "a,b", groups_len bytes) may
 * reach what a names. */
bool credentials_access_allows(const struct credentials_access *a, const char *user,
			       const char *groups, size_t groups_len);
/* The same for user's entry in c (its groups field). */
bool credentials_user_allowed(const struct credentials *c, const char *user,
			      const struct credentials_access *a);

/* In a line's text after the hash: the ':' that starts the next field after
 * p, one followed by a field's name and '=' (so an IPv6 address in from=
 * keeps its colons), or NULL. Editors of the file split fields with it. */
const char *credentials_next_field(const char *p, const char *end);

/* "YYYY-MM-DD" (len 10) as days since 1970-01-01; -1 if it is no date. */
int credentials_parse_date(const char *s, size_t len, int64_t *day);
/* Why "a,b,c" is no valid group list, or NULL. */
const char *credentials_groups_problem(const char *s, size_t len);

/* True if user names an entry (for listing tools and tests; not for the login
 * path, whose answer must not depend on it). */
bool credentials_has_user(const struct credentials *c, const char *user);

/* True if user is a name the file format can hold: 1..CREDENTIALS_MAX_USER
 * bytes of printable ASCII without ':' or space, not starting with '#'. The
 * parser applies the same rule; sockgate-passwd uses it before writing. On
 * false, err says why without quoting the name. */
bool credentials_valid_user(const char *user, struct errbuf *err);

/* Compares a and b in time that depends only on len. 0 if equal. */
int credentials_memcmp_ct(const void *a, const void *b, size_t len);

/* The credentials in force for one gateway, replaced by a reload while logins
 * are under way: a password is checked against what is in force when it is
 * checked, not when its connection was accepted. Thread-safe. */
struct credentials_slot;

/* A slot holding c (a new reference is taken; c may be NULL). */
struct credentials_slot *credentials_slot_create(struct credentials *c);
void credentials_slot_free(struct credentials_slot *slot);
/* Replaces what the slot holds (a new reference to c; NULL: none any more). */
void credentials_slot_set(struct credentials_slot *slot, struct credentials *c);
/* A new reference to what the slot holds now, or NULL. */
struct credentials *credentials_slot_get(struct credentials_slot *slot);

#endif
