/* test_pam: auth = "pam" against real PAM stacks read from a private
 * directory (pam_start_confdir; the host's /etc/pam.d is never read):
 * pam_pwdfile (Debian's libpam-pwdfile) checks passwords, pam_oath
 * (libpam-oath) asks a second factor, and pam_sgtest (tests/pam/, built for
 * the tests) gives account verdicts and an info line. The conversation is the
 * dialogue: PAM's prompts reach the client and its lines go back; PAM's
 * failure delay puts no thread to sleep; an unknown user takes what a wrong
 * password takes; an expired account fails like a wrong password and a
 * required password change is refused with a message; a client that stops
 * answering holds its PAM thread no longer than its grace time; a missing
 * service is a configuration error. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <crypt.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"
#include "timing.h"

#define PASSWORD "Pam-Pass-5"
#define T        FIXTURE_TIMEOUT_MS
#define OATHTOOL "/usr/bin/oathtool"
#define PAMDIR   "/lib/x86_64-linux-gnu/security"
/* RFC 6238's SHA-1 key, "12345678901234567890", as pam_oath wants it (hex). */
#define OATH_HEX "3132333435363738393031323334353637383930"

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* The stacks, in DIR/pam.d, and their files. */
static void write_stacks(const struct fixture *f)
{
	/* root: a user NSS knows (its group root), for targets by group. */
	static const char *const users[] = {"alice", "bob", "dave", "erin", "root"};
	char path[PATH_MAX + 64], text[3 * PATH_MAX], salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	size_t o = 0;

	for (size_t i = 0; i < 5; i++) {
		const char *h;

		memset(&cd, 0, sizeof(cd));
		assert_non_null(crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)));
		h = crypt_r(PASSWORD, salt, &cd);
		assert_non_null(h);
		o += (size_t)snprintf(text + o, sizeof(text) - o, "%s:%s\n", users[i], h);
	}
	snprintf(path, sizeof(path), "%s/pwdfile", f->dir);
	write_text(path, text, 0600);
	snprintf(path, sizeof(path), "%s/oath", f->dir);
	write_text(path, "HOTP/T30 alice - " OATH_HEX "\n", 0600);
	snprintf(path, sizeof(path), "%s/pam.d", f->dir);
	assert_int_equal(mkdir(path, 0755), 0);

	/* No "nodelay": pam_pwdfile asks PAM for 2 s after a failure. */
	snprintf(path, sizeof(path), "%s/pam.d/plain", f->dir);
	snprintf(text, sizeof(text),
		 "auth required pam_pwdfile.so pwdfile=%s/pwdfile\n"
		 "account required %s expired=dave newtok=erin\n",
		 f->dir, PAM_SGTEST);
	write_text(path, text, 0644);
	snprintf(path, sizeof(path), "%s/pam.d/otp", f->dir);
	snprintf(text, sizeof(text),
		 "auth required pam_pwdfile.so pwdfile=%s/pwdfile\n"
		 "auth required pam_oath.so usersfile=%s/oath window=1 digits=6\n"
		 "account required pam_permit.so\n",
		 f->dir, f->dir);
	write_text(path, text, 0644);
	snprintf(path, sizeof(path), "%s/pam.d/info", f->dir);
	snprintf(text, sizeof(text),
		 "auth required pam_pwdfile.so pwdfile=%s/pwdfile\n"
		 "auth required %s [info=Welcome to the lab.]\n"
		 "account required pam_permit.so\n",
		 f->dir, PAM_SGTEST);
	write_text(path, text, 0644);
}

/* A gateway with auth = "pam" on service; login settings added. */
static int start_with(void **state, const char *service, const char *top, const char *login,
		      const char *extra)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char gw[PATH_MAX + 512];

	if (access(PAMDIR "/pam_pwdfile.so", R_OK) != 0)
		test_skip("no pam_pwdfile.so (Debian package libpam-pwdfile)");
	assert_non_null(f);
	*state = f;
	assert_int_equal(fixture_init(f, NULL), 0);
	f->no_credentials = true;
	write_stacks(f);
	assert_int_equal(fixture_upstream(f, NULL), 0);
	snprintf(gw, sizeof(gw),
		 "auth = \"pam\"; pam_service = \"%s\"; pam_config_dir = \"%s/pam.d\";\n"
		 "login = { failure_delay = 0; max_attempts = 100; %s };\n%s",
		 service, f->dir, login, extra);
	assert_int_equal(fixture_config(f, top, gw), 0);
	assert_int_equal(fixture_start(f), 0);
	return 0;
}

static int start(void **state, const char *service, const char *top, const char *login)
{
	return start_with(state, service, top, login, "");
}

static int setup_plain(void **state)
{
	return start(state, "plain", "penalties = { enabled = false; };", "");
}

static int teardown(void **state)
{
	return fixture_test_teardown(state, PASSWORD);
}

/* One attempt: what came back after the user name, until "Username: " (a
 * failure) or the success message. */
static int attempt(struct fixture *f, const char *text, char *seen, size_t len)
{
	int fd = harness_connect("127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, text);
	if (fixture_expect(fd, "Username: ", seen, len, T) < 0 &&
	    strstr(seen, "You are now logged in.\n") == NULL)
		fail_msg("neither a failure nor a login: \"%s\"", seen);
	return fd;
}

static void pam_logs_in_and_relays(void **state)
{
	struct fixture *f = *state;
	char buf[4096], line[1024];
	int fd = harness_connect("127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	/* pam_pwdfile's own prompt, through the conversation. */
	expect_str(fd, "Password: ");
	send_str(fd, PASSWORD "\nthrough PAM\n");
	assert_true(fixture_expect(fd, "I got your message: through PAM\n", buf, sizeof(buf), T) >
		    0);
	assert_non_null(strstr(buf, "You are now logged in.\n"));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login ok", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"alice\""));
}

/* pam_pwdfile asks for 2 s after a failure; PAM's delay item is sockgate's,
 * so the answer comes with failure_delay (0 here), not 2 s later. */
static void pam_fail_delay_puts_no_thread_to_sleep(void **state)
{
	struct fixture *f = *state;
	char seen[4096];
	long long t0 = harness_now_ms(), took;
	int fd = attempt(f, "alice\nwrong\n", seen, sizeof(seen));

	took = harness_now_ms() - t0;
	close(fd);
	assert_non_null(strstr(seen, "incorrect.\nUsername: "));
	print_message("wrong password answered in %lld ms\n", took);
	assert_true(took < 1000);
}

/* pam_pwdfile answers an unknown user at once and a wrong password after
 * yescrypt: the answers take the same time all the same (medians of 40 each,
 * in rotation, within 25 %). */
static void an_unknown_user_takes_what_a_wrong_password_takes(void **state)
{
	struct fixture *f = *state;
	static const char *const attempts[] = {"alice\nwrong-password\n",
					       "mallory\nwrong-password\n"};
	static const char *const names[] = {"wrong password", "unknown user"};
	long long medians[2];

	if (getenv("SOCKGATE_TEST_WRAPPER") != NULL)
		test_skip("under a wrapper: it distorts timing");
	assert_int_equal(
		timing_medians(f->port, attempts, 2, 40, 100, "incorrect.\nUsername: ", medians),
		0);
	/* Unpadded, an unknown user takes a twentieth of a wrong password; 25 % leaves
	 * room for a loaded machine without hiding that. */
	assert_true(timing_alike(medians, names, 2, 0.25));
}

/* pam_acct_mgmt: an expired account fails like a wrong password (the log says
 * why); a password that must be changed is refused with a message. */
static void account_management_is_honoured(void **state)
{
	struct fixture *f = *state;
	char wrong[4096], expired[4096], line[1024], buf[4096];
	int fd;

	fd = attempt(f, "alice\nwrong\n", wrong, sizeof(wrong));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	fd = attempt(f, "dave\n" PASSWORD "\n", expired, sizeof(expired));
	close(fd);
	assert_string_equal(expired, wrong);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"account expired\""));

	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "erin\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "change it, then log in again.\n", buf, sizeof(buf), T) > 0);
	close(fd);
	assert_int_equal(fixture_log_wait(f, "login failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"password change required\""));
}

static int setup_otp(void **state)
{
	return start(state, "otp", "penalties = { enabled = false; };", "");
}

/* pam_oath after pam_pwdfile: a second prompt, answered with oathtool's code. */
static void pam_oath_asks_a_second_factor(void **state)
{
	struct fixture *f = *state;
	char code[32], buf[4096];
	const char *argv[] = {OATHTOOL, "--totp", OATH_HEX, NULL};
	struct harness_proc p;
	ssize_t n;
	int fd;

	if (access(OATHTOOL, X_OK) != 0 || access(PAMDIR "/pam_oath.so", R_OK) != 0)
		test_skip("no oathtool or pam_oath.so (Debian packages oathtool, libpam-oath)");
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	n = harness_read_all(p.out_fd, code, sizeof(code) - 1, T);
	assert_true(n > 0);
	code[n] = '\0';
	assert_int_equal(harness_wait_exit(&p, T), 0);
	harness_cleanup(&p);

	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n");
	expect_str(fd, "Password: ");
	send_str(fd, PASSWORD "\n");
	expect_str(fd, "One-time password (OATH) for `alice': ");
	send_str(fd, code); /* with its newline */
	assert_true(fixture_expect(fd, "You are now logged in.\n", buf, sizeof(buf), T) > 0);
	close(fd);
}

static int setup_info(void **state)
{
	return start(state, "info", NULL, "");
}

/* What a module says on the way (PAM_TEXT_INFO) is a line to the client. */
static void pam_info_lines_reach_the_client(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	int fd = harness_connect("127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "bob\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "You are now logged in.\n", buf, sizeof(buf), T) > 0);
	assert_non_null(strstr(buf, "Welcome to the lab.\nUsername and password are correct."));
	close(fd);
}

static int setup_one_thread(void **state)
{
	return start(state, "plain", "limits = { pam_threads = 1; };", "grace_time = 1;");
}

/* With one PAM thread, a client that never answers the password prompt
 * holds it until its grace time ends; then the next client is served. */
static void a_silent_client_holds_pam_no_longer_than_its_grace_time(void **state)
{
	struct fixture *f = *state;
	char line[1024], buf[4096];
	int silent = harness_connect("127.0.0.1", f->port), fd;

	assert_true(silent >= 0);
	expect_str(silent, "Username: ");
	send_str(silent, "alice\n");
	expect_str(silent, "Password: ");
	/* The grace time (1 s) ends it, and frees the thread. */
	assert_true(fixture_expect(silent, "Login timed out.\n", buf, sizeof(buf), T) > 0);
	close(silent);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	fd = fixture_login(f->port, "bob", PASSWORD);
	assert_true(fd >= 0);
	close(fd);
}

/* A service that is not in the directory is refused when the configuration
 * is checked, not at the first login. */
static void a_missing_service_is_a_configuration_error(void **state)
{
	struct fixture f;
	char conf[PATH_MAX + 64], text[PATH_MAX + 512], err[4096];
	const char *argv[] = {"sockgate", "-t", "-c", conf, NULL};
	struct harness_proc p;
	ssize_t n;

	(void)state;
	assert_int_equal(fixture_init(&f, NULL), 0);
	snprintf(conf, sizeof(conf), "%s/missing.conf", f.dir);
	snprintf(text, sizeof(text),
		 "gateways = ( { name = \"g\"; listen = \"127.0.0.1:0\"; upstream = "
		 "\"127.0.0.1:1\"; auth = \"pam\"; pam_service = \"nosuch\"; pam_config_dir = "
		 "\"%s\"; } );\n",
		 f.dir);
	write_text(conf, text, 0644);
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_not_equal(p.exit_code, 0);
	n = harness_read_all(p.err_fd, err, sizeof(err) - 1, T);
	err[n > 0 ? n : 0] = '\0';
	assert_non_null(strstr(err, "no PAM service \"nosuch\""));
	harness_cleanup(&p);
	fixture_teardown(&f, 0);
}

static int setup_targets(void **state)
{
	return start_with(state, "plain", NULL, "target = \"menu\";",
			  "targets = ( { name = \"ops\"; upstream = \"127.0.0.1:1\"; "
			  "groups = ( \"root\" ); } );");
}

/* A PAM gateway's groups come from NSS: root is in group root and reaches
 * the target that names it; alice, whom NSS does not know, reaches none. */
static void pam_users_groups_come_from_nss(void **state)
{
	struct fixture *f = *state;
	char buf[4096], line[1024];
	int fd = harness_connect("127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "Not permitted.\n", buf, sizeof(buf), T) > 0);
	close(fd);
	fd = harness_connect("127.0.0.1", f->port);
	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "root\n" PASSWORD "\n");
	/* One target: no menu; its upstream (port 1) refuses, so the answer
	 * is "Service unavailable." after a login that got that far. */
	assert_true(fixture_expect(fd, "Service unavailable.\n", buf, sizeof(buf), T) > 0);
	assert_null(strstr(buf, "Not permitted"));
	close(fd);
	assert_int_equal(fixture_log_wait(f, "user=\"root\"", line, sizeof(line)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(pam_logs_in_and_relays, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(pam_fail_delay_puts_no_thread_to_sleep, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(an_unknown_user_takes_what_a_wrong_password_takes,
						setup_plain, teardown),
		cmocka_unit_test_setup_teardown(account_management_is_honoured, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(pam_oath_asks_a_second_factor, setup_otp, teardown),
		cmocka_unit_test_setup_teardown(pam_info_lines_reach_the_client, setup_info,
						teardown),
		cmocka_unit_test_setup_teardown(
			a_silent_client_holds_pam_no_longer_than_its_grace_time, setup_one_thread,
			teardown),
		cmocka_unit_test(a_missing_service_is_a_configuration_error),
		cmocka_unit_test_setup_teardown(pam_users_groups_come_from_nss, setup_targets,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("pam", tests, NULL, NULL));
}
