/* test_totp: a second factor in the dialogue, against codes computed by
 * oathtool (Debian's oathtool package): a current code logs in and relays; a
 * code used once is refused for the rest of its validity, across reloads; a
 * code from two steps ago is refused with a window of 1; SHA-256 and 8 digits
 * per user; the code is asked whatever the password was; and the four kinds of
 * failure (wrong password, wrong code, unknown user, user without a secret)
 * look the same and take the same time. Account policy: a locked or expired
 * account fails like a wrong password (the log says why), timeouts.session
 * ends a session, max_sessions_per_user caps a user's sessions, and
 * revoke_on_reload ends the sessions of a user who lost the second factor. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"
#include "timing.h"

#define PASSWORD "Totp-Pass-9"
#define SECRET   "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#define SECRET2  "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#define OATHTOOL "/usr/bin/oathtool"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {
	"alice:totp=" SECRET,
	PASSWORD,
	"bob",
	PASSWORD,
	"carol:totp=" SECRET2 ":totp_alg=SHA256:totp_digits=8",
	PASSWORD,
	"dave:totp=" SECRET ":expires=2000-01-01",
	PASSWORD,
	"erin:totp=" SECRET2,
	PASSWORD,
	NULL,
};

/* oathtool's code for secret at now + offset seconds (sha: NULL or "sha256"). */
static void oathtool_code(const char *secret, long offset, const char *sha, unsigned digits,
			  char *out, size_t len)
{
	char when[64], dig[16], alg[32];
	const char *argv[12] = {OATHTOOL, "--totp", "-b", "-N", when, "-d", dig};
	size_t n = 7;
	struct harness_proc p;
	ssize_t got;

	snprintf(when, sizeof(when), "@%lld", (long long)time(NULL) + offset);
	snprintf(dig, sizeof(dig), "%u", digits);
	if (sha != NULL) {
		snprintf(alg, sizeof(alg), "--totp=%s", sha);
		argv[1] = alg;
	}
	argv[n++] = secret;
	argv[n] = NULL;
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	got = harness_read_all(p.out_fd, out, len - 1, T);
	assert_true(got > 0);
	out[got] = '\0';
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_equal(p.exit_code, 0);
	harness_cleanup(&p);
}

static int start(void **state, const char *top, const char *extra)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char gw[1024];

	if (access(OATHTOOL, X_OK) != 0)
		test_skip("no %s (Debian package oathtool)", OATHTOOL);
	assert_non_null(f);
	*state = f;
	snprintf(
		gw, sizeof(gw),
		"login = { second_factor = \"totp\"; failure_delay = 0; max_attempts = 100; };\n%s",
		extra);
	assert_int_equal(fixture_setup(f, users, NULL, top, gw), 0);
	return 0;
}

static int setup(void **state)
{
	return start(state, "penalties = { enabled = false; };", "");
}

static int teardown(void **state)
{
	return fixture_test_teardown(state, PASSWORD);
}

/* Logs in with a code; returns the socket after the success message, or -1
 * (the failure message came instead). */
static int login_code(struct fixture *f, const char *user, const char *password, const char *code)
{
	char buf[4096], text[512];
	int fd = harness_connect("127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	snprintf(text, sizeof(text), "%s\n%s\n%s\n", user, password, code);
	send_str(fd, text);
	/* "... are correct.\n" or "... is incorrect.\n", after both prompts. */
	assert_true(fixture_expect(fd, "correct.\n", buf, sizeof(buf), T) > 0);
	assert_non_null(strstr(buf, "Password: Verification code: "));
	if (strstr(buf, "is incorrect.\n") != NULL) {
		close(fd);
		return -1;
	}
	if (strstr(buf, "You are now logged in.\n") == NULL)
		expect_str(fd, "You are now logged in.\n");
	return fd;
}

static void a_current_code_logs_in_and_relays(void **state)
{
	struct fixture *f = *state;
	char code[16], line[1024];
	int fd;

	oathtool_code(SECRET, 0, NULL, 6, code, sizeof(code));
	fd = login_code(f, "alice", PASSWORD, code);
	assert_true(fd >= 0);
	send_str(fd, "with a code\n");
	expect_str(fd, "I got your message: with a code\n");
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login ok", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"alice\""));
}

/* SHA-256 and 8 digits, as carol enrolled; a 6-digit code is no code of hers. */
static void per_user_algorithm_and_digits(void **state)
{
	struct fixture *f = *state;
	char code[16];
	int fd;

	oathtool_code(SECRET2, 0, "sha256", 6, code, sizeof(code));
	assert_int_equal(login_code(f, "carol", PASSWORD, code), -1);
	oathtool_code(SECRET2, 0, "sha256", 8, code, sizeof(code));
	fd = login_code(f, "carol", PASSWORD, code);
	assert_true(fd >= 0);
	close(fd);
}

/* A code is good once, and a reload does not make it good again. */
static void a_used_code_is_refused(void **state)
{
	struct fixture *f = *state;
	char code[16], line[1024];
	int fd;

	oathtool_code(SECRET, 0, NULL, 6, code, sizeof(code));
	fd = login_code(f, "alice", PASSWORD, code);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(login_code(f, "alice", PASSWORD, code), -1);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"verification code already used\""));
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(login_code(f, "alice", PASSWORD, code), -1);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"verification code already used\""));
}

/* Window 1: the code of two steps ago is refused (the step may turn between
 * computing and checking: then it is three steps ago, refused as well). */
static void a_code_from_two_steps_ago_is_refused(void **state)
{
	struct fixture *f = *state;
	char code[16], line[1024];

	oathtool_code(SECRET2, -60, NULL, 6, code, sizeof(code));
	assert_int_equal(login_code(f, "erin", PASSWORD, code), -1);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"wrong verification code\""));
}

/* The code is asked whatever the password, the user or the account: every
 * failure gets the same bytes; the log tells them apart. */
static void every_failure_looks_the_same(void **state)
{
	struct fixture *f = *state;
	char code[16], good_erin[16], line[1024], seen[6][4096];
	struct {
		const char *user, *password, *code, *reason;
	} cases[] = {
		{"alice", "wrong-password", code, "reason=\"bad credentials\""},
		{"alice", PASSWORD, "000000 0", "reason=\"wrong verification code\""},
		{"mallory", PASSWORD, code, "reason=\"bad credentials\""},
		{"bob", PASSWORD, code, "reason=\"no second factor enrolled\""},
		{"dave", PASSWORD, code, "reason=\"account expired\""},
		{"erin", PASSWORD, good_erin, "reason=\"account locked\""},
	};
	oathtool_code(SECRET, 0, NULL, 6, code, sizeof(code));
	oathtool_code(SECRET2, 0, NULL, 6, good_erin, sizeof(good_erin));
	/* Lock erin as sockgate-passwd -L does: '!' before her hash. */
	{
		FILE *in = fopen(f->users, "r");
		char text[16384] = "", l[2048];

		assert_non_null(in);
		while (fgets(l, sizeof(l), in) != NULL) {
			if (strncmp(l, "erin:", 5) == 0) {
				strcat(text, "erin:!");
				strcat(text, l + 5);
			} else {
				strcat(text, l);
			}
		}
		fclose(in);
		in = fopen(f->users, "w");
		assert_non_null(in);
		fputs(text, in);
		fclose(in);
		assert_int_equal(fixture_reload(f), 0);
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];
		int fd = harness_connect("127.0.0.1", f->port);

		assert_true(fd >= 0);
		expect_str(fd, "Username: ");
		snprintf(text, sizeof(text), "%s\n%s\n%s\n", cases[i].user, cases[i].password,
			 cases[i].code);
		send_str(fd, text);
		assert_true(fixture_expect(fd, "incorrect.\nUsername: ", seen[i], sizeof(seen[i]),
					   T) > 0);
		close(fd);
		assert_string_equal(seen[i], seen[0]);
		assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
		if (strstr(line, cases[i].reason) == NULL)
			fail_msg("case %zu: \"%s\" lacks %s", i, line, cases[i].reason);
	}
	assert_string_equal(seen[0], "Password: Verification code: Username or password is "
				     "incorrect.\nUsername: ");
}

/* The four kinds of failure of the issue take the same time: medians of 40
 * each, in rotation, within 25 % (no failure delay, to see the checks). */
static void every_failure_takes_the_same_time(void **state)
{
	struct fixture *f = *state;
	static const char *const attempts[] = {
		"alice\nwrong-password\n000000\n", /* wrong password */
		"alice\n" PASSWORD "\n0000000\n",  /* wrong code (never a 6-digit one) */
		"mallory\n" PASSWORD "\n000000\n", /* unknown user */
		"bob\n" PASSWORD "\n000000\n",     /* no secret */
	};
	static const char *const names[] = {"wrong password", "wrong code", "unknown user",
					    "no secret"};
	long long medians[4];

	if (getenv("SOCKGATE_TEST_WRAPPER") != NULL)
		test_skip("under a wrapper: it distorts timing");
	assert_int_equal(
		timing_medians(f->port, attempts, 4, 40, 100, "incorrect.\nUsername: ", medians),
		0);
	/* A failure that skipped the hash would take a twentieth of the others;
	 * 25 % leaves room for a loaded machine without hiding that. */
	assert_true(timing_alike(medians, names, 4, 0.25));
}

static int setup_revoke(void **state)
{
	return start(state, "penalties = { enabled = false; };\nrevoke_on_reload = true;", "");
}

/* alice loses her second factor in a reload: her session ends; erin, whose
 * line did not change, relays on. */
static void losing_the_second_factor_revokes(void **state)
{
	struct fixture *f = *state;
	char code[16], line[1024], text[16384] = "", l[2048];
	int alice, erin;
	FILE *in;

	oathtool_code(SECRET, 0, NULL, 6, code, sizeof(code));
	alice = login_code(f, "alice", PASSWORD, code);
	oathtool_code(SECRET2, 0, NULL, 6, code, sizeof(code));
	erin = login_code(f, "erin", PASSWORD, code);
	assert_true(alice >= 0 && erin >= 0);
	in = fopen(f->users, "r");
	assert_non_null(in);
	while (fgets(l, sizeof(l), in) != NULL) {
		/* Her line without its fields: the hash alone. */
		if (strncmp(l, "alice:", 6) == 0)
			strcpy(strstr(l, ":totp="), "\n");
		strcat(text, l);
	}
	fclose(in);
	in = fopen(f->users, "w");
	assert_non_null(in);
	fputs(text, in);
	fclose(in);
	assert_int_equal(fixture_reload(f), 0);
	(void)read_to_eof(alice);
	assert_int_equal(fixture_log_wait(f, "access revoked remote_addr", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"alice\""));
	assert_non_null(strstr(line, "reason=\"second factor removed\""));
	send_str(erin, "still here\n");
	expect_str(erin, "I got your message: still here\n");
	close(alice);
	close(erin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_current_code_logs_in_and_relays, setup, teardown),
		cmocka_unit_test_setup_teardown(per_user_algorithm_and_digits, setup, teardown),
		cmocka_unit_test_setup_teardown(a_used_code_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(a_code_from_two_steps_ago_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(every_failure_looks_the_same, setup, teardown),
		cmocka_unit_test_setup_teardown(every_failure_takes_the_same_time, setup, teardown),
		cmocka_unit_test_setup_teardown(losing_the_second_factor_revokes, setup_revoke,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("totp", tests, NULL, NULL));
}
