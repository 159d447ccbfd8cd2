/* test_targets: one gateway in front of several services, each user routed
 * only to what they may reach. Targets name their users and groups (groups
 * from the credentials file). With login.target = "suffix" a user types
 * user@target at the prompt, and a target that is not theirs fails exactly
 * like a wrong password; with "menu" a user with several targets picks one
 * from a numbered list, a user with one goes straight there, and a user with
 * none is told "Not permitted.". The target is in the session's log line. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "Targets-Pass-2"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {
	"alice:groups=dba", PASSWORD, "bob:groups=ops", PASSWORD, "carol", PASSWORD, NULL,
};

struct targets {
	struct fixture f;
	struct harness_proc b;
	int port_b;
};

static int start(void **state, const char *mode)
{
	struct targets *p = calloc(1, sizeof(*p));
	static const char *const tag_a[] = {"--tag", "A", NULL};
	const char *argv[] = {"sockgate-server", "-l", "127.0.0.1", "-p", "0", "--tag", "B", NULL};
	char text[3 * PATH_MAX];

	assert_non_null(p);
	*state = p;
	assert_int_equal(fixture_init(&p->f, users), 0);
	assert_int_equal(fixture_upstream(&p->f, tag_a), 0);
	assert_int_equal(harness_spawn(&p->b, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	p->port_b = harness_read_port(p->b.err_fd, T);
	assert_true(p->port_b > 0);
	snprintf(text, sizeof(text),
		 "penalties = { enabled = false; };\n"
		 "gateways = ( { name = \"bastion\"; listen = \"127.0.0.1:0\";\n"
		 "  upstream = \"127.0.0.1:1\"; credentials = \"%s\";\n"
		 "  login = { target = \"%s\"; failure_delay = 0; max_attempts = 10; };\n"
		 "  targets = (\n"
		 "    { name = \"db1\"; upstream = \"127.0.0.1:%d\"; users = ( \"alice\" ); },\n"
		 "    { name = \"db2\"; upstream = \"127.0.0.1:%d\"; groups = ( \"dba\", \"ops\" "
		 "); }\n"
		 "  ); } );\n",
		 p->f.users, mode, p->f.upstream_port, p->port_b);
	assert_int_equal(fixture_write_config(&p->f, text), 0);
	assert_int_equal(fixture_start(&p->f), 0);
	return 0;
}

static int setup_suffix(void **state)
{
	return start(state, "suffix");
}

static int setup_menu(void **state)
{
	return start(state, "menu");
}

static int teardown(void **state)
{
	struct targets *p = *state;

	harness_cleanup(&p->b);
	*state = &p->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* Reads fd into seen until it holds one of the answers a route ends in. */
static void read_until_answer(int fd, char *seen, size_t cap)
{
	static const char *const ends[] = {"I got your message: where\n",
					   "incorrect.\nUsername: ", "Not permitted.\n"};
	long long deadline = harness_now_ms() + T;
	size_t len = 0;

	seen[0] = '\0';
	for (;;) {
		ssize_t n;

		for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
			if (strstr(seen, ends[i]) != NULL)
				return;
		assert_true(harness_now_ms() < deadline && len + 1 < cap);
		n = harness_read_some(fd, seen + len, cap - 1 - len, 100);
		if (n == 0)
			return; /* the end: the caller sees which answer, if any */
		if (n > 0) {
			len += (size_t)n;
			seen[len] = '\0';
		}
	}
}

/* Sends the dialogue (and a line for the upstream) and returns which upstream
 * answered ('A' or 'B'), or 0 after a failure; seen gets the bytes. */
static char route(struct fixture *f, const char *dialogue, char *seen, size_t cap)
{
	int fd = harness_connect("127.0.0.1", f->port);
	char *tag;

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, dialogue);
	send_str(fd, "where\n");
	read_until_answer(fd, seen, cap);
	close(fd);
	tag = strstr(seen, "I got your message: where\n") != NULL ? strstr(seen, "[") : NULL;
	return tag != NULL ? tag[1] : 0;
}

static void suffix_routes_each_user_to_their_targets(void **state)
{
	struct targets *p = *state;
	char seen[4096], wrong[4096], line[1024];

	assert_int_equal(route(&p->f, "alice@db1\n" PASSWORD "\n", seen, sizeof(seen)), 'A');
	assert_int_equal(route(&p->f, "alice@db2\n" PASSWORD "\n", seen, sizeof(seen)), 'B');
	assert_int_equal(route(&p->f, "bob@db2\n" PASSWORD "\n", seen, sizeof(seen)), 'B');
	assert_int_equal(fixture_log_wait(&p->f, "target=db2", line, sizeof(line)), 0);
	/* Not theirs: exactly a wrong password's answer. */
	assert_int_equal(route(&p->f, "alice@db1\nwrong\n", wrong, sizeof(wrong)), 0);
	assert_int_equal(route(&p->f, "bob@db1\n" PASSWORD "\n", seen, sizeof(seen)), 0);
	assert_string_equal(seen, wrong);
	assert_int_equal(fixture_log_wait(&p->f, "target not permitted", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "user=\"bob\""));
	assert_int_equal(route(&p->f, "carol@db2\n" PASSWORD "\n", seen, sizeof(seen)), 0);
	assert_string_equal(seen, wrong);
	/* No target named: nothing to reach. */
	assert_int_equal(route(&p->f, "alice\n" PASSWORD "\n", seen, sizeof(seen)), 0);
	assert_string_equal(seen, wrong);
}

static void menu_lists_only_what_the_user_may_reach(void **state)
{
	struct targets *p = *state;
	char seen[4096], line[1024];

	/* alice: two targets, picked by number and by name. */
	assert_int_equal(route(&p->f, "alice\n" PASSWORD "\n2\n", seen, sizeof(seen)), 'B');
	assert_non_null(strstr(seen, "Targets:\n  1) db1\n  2) db2\nTarget: "));
	assert_int_equal(route(&p->f, "alice\n" PASSWORD "\ndb1\n", seen, sizeof(seen)), 'A');
	/* bob: one target, no question. */
	assert_int_equal(route(&p->f, "bob\n" PASSWORD "\n", seen, sizeof(seen)), 'B');
	assert_null(strstr(seen, "Targets:"));
	/* A target that is not on alice's list, and carol with none. */
	assert_int_equal(route(&p->f, "bob\n" PASSWORD "\n", seen, sizeof(seen)), 'B');
	assert_int_equal(route(&p->f, "alice\n" PASSWORD "\n7\n", seen, sizeof(seen)), 0);
	assert_non_null(strstr(seen, "Not permitted.\n"));
	assert_int_equal(route(&p->f, "carol\n" PASSWORD "\n", seen, sizeof(seen)), 0);
	assert_non_null(strstr(seen, "Not permitted.\n"));
	assert_int_equal(
		fixture_log_wait(&p->f, "no target permitted for this user", line, sizeof(line)),
		0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(suffix_routes_each_user_to_their_targets,
						setup_suffix, teardown),
		cmocka_unit_test_setup_teardown(menu_lists_only_what_the_user_may_reach, setup_menu,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("targets", tests, NULL, NULL));
}
