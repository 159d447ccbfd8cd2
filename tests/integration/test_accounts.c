/* test_accounts: account policy in the credentials file and per gateway. A
 * locked or expired account fails like a wrong password (the log says why);
 * timeouts.session ends a session whatever it does; max_sessions_per_user
 * caps one user's sessions and frees the slot when one ends; revoke_on_reload
 * ends the sessions of users who were locked, expired or lost their second
 * factor, and leaves the others alone. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "Accounts-Pass-3"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {
	"alice",
	PASSWORD,
	"bob",
	PASSWORD,
	"carol:expires=2001-02-03",
	PASSWORD,
	"dave:groups=ops",
	PASSWORD,
	"erin:from=127.0.0.50,::1",
	PASSWORD,
	NULL,
};

static int start(void **state, const char *top, const char *extra)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	assert_int_equal(fixture_setup(f, users, NULL, top, extra), 0);
	return 0;
}

static int teardown(void **state)
{
	return fixture_test_teardown(state, PASSWORD);
}

/* Rewrites the credentials file: each line of user gets its hash prefixed with
 * prefix and suffix appended (the rest of the file kept byte for byte). */
static void edit_user(struct fixture *f, const char *user, const char *prefix, const char *suffix)
{
	char text[16384] = "", line[2048], tmp[PATH_MAX + 40];
	size_t ulen = strlen(user);
	FILE *in = fopen(f->users, "r");

	assert_non_null(in);
	while (fgets(line, sizeof(line), in) != NULL) {
		if (strncmp(line, user, ulen) == 0 && line[ulen] == ':') {
			line[strcspn(line, "\n")] = '\0';
			snprintf(text + strlen(text), sizeof(text) - strlen(text), "%.*s:%s%s%s\n",
				 (int)ulen, line, prefix, line + ulen + 1, suffix);
		} else {
			strncat(text, line, sizeof(text) - strlen(text) - 1);
		}
	}
	fclose(in);
	snprintf(tmp, sizeof(tmp), "%s.new", f->users);
	in = fopen(tmp, "w");
	assert_non_null(in);
	fputs(text, in);
	fclose(in);
	assert_int_equal(chmod(tmp, 0600), 0);
	assert_int_equal(rename(tmp, f->users), 0);
}

/* ---- locked and expired ----------------------------------------------------- */

static int setup_plain(void **state)
{
	return start(state, "penalties = { enabled = false; };", "login = { failure_delay = 0; };");
}

static void locked_and_expired_fail_like_a_wrong_password(void **state)
{
	struct fixture *f = *state;
	char line[1024], seen[3][4096];
	static const struct {
		const char *attempt, *reason;
	} cases[] = {
		{"alice\nwrong\n", "reason=\"bad credentials\""},
		{"bob\n" PASSWORD "\n", "reason=\"account locked\""},
		{"carol\n" PASSWORD "\n", "reason=\"account expired\""},
	};

	edit_user(f, "bob", "!", "");
	assert_int_equal(fixture_reload(f), 0);
	for (size_t i = 0; i < 3; i++) {
		int fd = harness_connect("127.0.0.1", f->port);

		assert_true(fd >= 0);
		expect_str(fd, "Username: ");
		send_str(fd, cases[i].attempt);
		assert_true(fixture_expect(fd, "Username: ", seen[i], sizeof(seen[i]), T) > 0);
		close(fd);
		assert_string_equal(seen[i], seen[0]);
		assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
		if (strstr(line, cases[i].reason) == NULL)
			fail_msg("\"%s\" lacks %s", line, cases[i].reason);
	}
	/* Unlocked, bob's password is his again; dave's groups change nothing. */
	{
		FILE *in = fopen(f->users, "r");
		char text[16384] = "", l[2048];

		assert_non_null(in);
		while (fgets(l, sizeof(l), in) != NULL) {
			char *bang = strstr(l, ":!");

			if (strncmp(l, "bob:", 4) == 0 && bang != NULL)
				memmove(bang + 1, bang + 2, strlen(bang + 2) + 1);
			strcat(text, l);
		}
		fclose(in);
		in = fopen(f->users, "w");
		assert_non_null(in);
		fputs(text, in);
		fclose(in);
	}
	assert_int_equal(fixture_reload(f), 0);
	for (size_t i = 0; i < 2; i++) {
		int fd = fixture_login(f->port, i == 0 ? "bob" : "dave", PASSWORD);

		assert_true(fd >= 0);
		close(fd);
	}
}

/* ---- timeouts.session ---------------------------------------------------- */

static int setup_life(void **state)
{
	return start(state, NULL, "timeouts = { session = 1; idle = 0; };");
}

/* A session that keeps talking still ends when its time is up. */
static void a_session_ends_at_its_time_limit(void **state)
{
	struct fixture *f = *state;
	char line[1024], *d;
	int fd = fixture_login(f->port, "alice", PASSWORD);

	assert_true(fd >= 0);
	send_str(fd, "busy\n");
	expect_str(fd, "I got your message: busy\n");
	(void)read_to_eof(fd);
	close(fd);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"session time limit reached\""));
	d = strstr(line, "duration_ms=");
	assert_non_null(d);
	assert_true(atol(d + 12) >= 1000);
}

/* ---- max_sessions_per_user ------------------------------------------------- */

static int setup_per_user(void **state)
{
	return start(state, NULL, "max_sessions_per_user = 2;");
}

static void one_user_gets_at_most_max_sessions(void **state)
{
	struct fixture *f = *state;
	char buf[4096], line[1024];
	int a1 = fixture_login(f->port, "alice", PASSWORD);
	int a2 = fixture_login(f->port, "alice", PASSWORD);
	int b = fixture_login(f->port, "bob", PASSWORD);
	int a3, fd;

	assert_true(a1 >= 0 && a2 >= 0 && b >= 0);
	/* The third of alice's: her password is right, the slot is not there. */
	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "Too many sessions for this user.\n", buf, sizeof(buf), T) >
		    0);
	(void)read_to_eof(fd);
	close(fd);
	assert_int_equal(fixture_log_wait(f, "max_sessions_per_user reached", line, sizeof(line)),
			 0);
	assert_non_null(strstr(line, "user=\"alice\""));
	/* One of hers ends: the next one fits. */
	close(a1);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	a3 = fixture_login(f->port, "alice", PASSWORD);
	assert_true(a3 >= 0);
	send_str(a3, "third\n");
	expect_str(a3, "I got your message: third\n");
	close(a2);
	close(a3);
	close(b);
}

/* ---- revoke_on_reload ------------------------------------------------------- */

static int setup_revoke(void **state)
{
	return start(state, "revoke_on_reload = true;", "");
}

static void revoke_on_reload_ends_locked_and_expired_users(void **state)
{
	struct fixture *f = *state;
	char line[1024];
	int alice = fixture_login(f->port, "alice", PASSWORD);
	int bob = fixture_login(f->port, "bob", PASSWORD);
	int dave = fixture_login(f->port, "dave", PASSWORD);
	bool seen_alice = false, seen_bob = false;

	assert_true(alice >= 0 && bob >= 0 && dave >= 0);
	edit_user(f, "alice", "!", "");
	edit_user(f, "bob", "", ":expires=2001-01-01");
	assert_int_equal(fixture_reload(f), 0);
	(void)read_to_eof(alice);
	(void)read_to_eof(bob);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(
			fixture_log_wait(f, "access revoked remote_addr", line, sizeof(line)), 0);
		seen_alice |= strstr(line, "user=\"alice\"") != NULL &&
			      strstr(line, "reason=\"account locked\"") != NULL;
		seen_bob |= strstr(line, "user=\"bob\"") != NULL &&
			    strstr(line, "reason=\"account expired\"") != NULL;
	}
	assert_true(seen_alice && seen_bob);
	/* dave's line did not change: he keeps relaying. */
	send_str(dave, "still here\n");
	expect_str(dave, "I got your message: still here\n");
	close(alice);
	close(bob);
	close(dave);
}

/* from=: erin may log in from 127.0.0.50 (and ::1) only; from anywhere
 * else her right password fails like a wrong one. */
static void a_user_logs_in_only_from_her_networks(void **state)
{
	struct fixture *f = *state;
	char seen[4096], wrong[4096], line[1024];
	int fd;

	fd = harness_connect_from("127.0.0.51", "127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "erin\nwrong\n");
	assert_true(fixture_expect(fd, "Username: ", wrong, sizeof(wrong), T) > 0);
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	fd = harness_connect_from("127.0.0.51", "127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "erin\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "Username: ", seen, sizeof(seen), T) > 0);
	close(fd);
	assert_string_equal(seen, wrong);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"address not allowed for this user\""));
	fd = harness_connect_from("127.0.0.50", "127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "erin\n" PASSWORD "\n");
	expect_str(fd, "You are now logged in.\n");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(locked_and_expired_fail_like_a_wrong_password,
						setup_plain, teardown),
		cmocka_unit_test_setup_teardown(a_user_logs_in_only_from_her_networks, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(a_session_ends_at_its_time_limit, setup_life,
						teardown),
		cmocka_unit_test_setup_teardown(one_user_gets_at_most_max_sessions, setup_per_user,
						teardown),
		cmocka_unit_test_setup_teardown(revoke_on_reload_ends_locked_and_expired_users,
						setup_revoke, teardown),
	};

	return test_exit(cmocka_run_group_tests_name("accounts", tests, NULL, NULL));
}
