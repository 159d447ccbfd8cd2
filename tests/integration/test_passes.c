/* test_passes: a gateway with authenticate = "pass" admits, without any
 * prompt, a client whose address logged in on the named login gateway within
 * pass.duration, and relays it with the pass's user in the log; any other
 * address, or the same one before a login, gets nothing at all (a binary
 * client would not understand a line); the pass ends when it expires and when
 * a reload removes its user. */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "Passes-Pass-4"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, "bob", PASSWORD, NULL};

struct passes_fx {
	struct fixture f;
	int login_port, db_port;
};

static int setup(void **state)
{
	struct passes_fx *p = calloc(1, sizeof(*p));
	char text[3 * PATH_MAX];

	assert_non_null(p);
	*state = p;
	assert_int_equal(fixture_init(&p->f, users), 0);
	assert_int_equal(fixture_upstream(&p->f, NULL), 0);
	p->db_port = free_port();
	snprintf(text, sizeof(text),
		 "gateways = (\n"
		 "  { name = \"login\"; listen = \"127.0.0.1:0\"; upstream = \"127.0.0.1:%d\";\n"
		 "    credentials = \"%s\"; },\n"
		 "  { name = \"db\"; listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:%d\";\n"
		 "    authenticate = \"pass\"; pass = { from_gateway = \"login\"; duration = 1.5; "
		 "}; }\n"
		 ");\n",
		 p->f.upstream_port, p->f.users, p->db_port, p->f.upstream_port);
	assert_int_equal(fixture_write_config(&p->f, text), 0);
	assert_int_equal(fixture_start(&p->f), 0);
	p->login_port = p->f.port;
	return 0;
}

static int teardown(void **state)
{
	struct passes_fx *p = *state;

	*state = &p->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* A login on the login gateway from src, then gone. */
static void log_in_from(struct passes_fx *p, const char *src, const char *user)
{
	char text[128];
	int fd = harness_connect_from(src, "127.0.0.1", p->login_port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	snprintf(text, sizeof(text), "%s\n%s\n", user, PASSWORD);
	send_str(fd, text);
	expect_str(fd, "You are now logged in.\n");
	close(fd);
}

/* Talks to the pass gateway from src like a binary client: no prompt is
 * awaited; true if the upstream answered. */
static bool relayed_from(struct passes_fx *p, const char *src)
{
	char buf[4096];
	int fd = harness_connect_from(src, "127.0.0.1", p->db_port);
	ssize_t got;

	assert_true(fd >= 0);
	send_str(fd, "select 1\n");
	got = fixture_expect(fd, "I got your message: select 1\n", buf, sizeof(buf), T);
	close(fd);
	/* Refused: not one byte came, not even a prompt. */
	if (got < 0 && buf[0] != '\0')
		fail_msg("refused with \"%s\"", buf);
	return got > 0;
}

static void a_login_lets_the_same_address_in_without_a_prompt(void **state)
{
	struct passes_fx *p = *state;
	char line[1024];

	assert_false(relayed_from(p, "127.0.0.31"));
	assert_int_equal(fixture_log_wait(&p->f, "no pass for this address", line, sizeof(line)),
			 0);
	log_in_from(p, "127.0.0.31", "alice");
	assert_true(relayed_from(p, "127.0.0.31"));
	assert_int_equal(fixture_log_wait(&p->f, "reason=\"pass from login\"", line, sizeof(line)),
			 0);
	assert_non_null(strstr(line, "gateway=db"));
	assert_non_null(strstr(line, "user=\"alice\""));
	/* Another address has no pass. */
	assert_false(relayed_from(p, "127.0.0.32"));
}

/* A pass lasts pass.duration (1.5 s here): it works at first, then not. */
static void a_pass_expires(void **state)
{
	struct passes_fx *p = *state;
	long long deadline;
	bool admitted = true;

	log_in_from(p, "127.0.0.33", "alice");
	assert_true(relayed_from(p, "127.0.0.33"));
	deadline = harness_now_ms() + 10000;
	while (admitted && harness_now_ms() < deadline)
		admitted = relayed_from(p, "127.0.0.33");
	assert_false(admitted);
}

/* A reload that removes the user ends the pass. */
static void a_reload_that_removes_the_user_ends_the_pass(void **state)
{
	struct passes_fx *p = *state;
	static const char *const only_alice[] = {"alice", PASSWORD, NULL};

	log_in_from(p, "127.0.0.34", "bob");
	assert_true(relayed_from(p, "127.0.0.34"));
	assert_int_equal(fixture_write_users(&p->f, only_alice), 0);
	assert_int_equal(fixture_reload(&p->f), 0);
	assert_false(relayed_from(p, "127.0.0.34"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_login_lets_the_same_address_in_without_a_prompt,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_pass_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(a_reload_that_removes_the_user_ends_the_pass, setup,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("passes", tests, NULL, NULL));
}
