/* test_pools: upstream pools. Round robin, least connections and source
 * balancing spread sessions over real sockgate-server upstreams (told apart by
 * --tag); a member that refuses is marked down at once (logged once) and the
 * next session is not sent there; when every member is down a client is told
 * "Service unavailable." without an attempt; active health checks mark a
 * stopped member down and a restarted one up again, in the journal's words
 * and in the status line. Also the gateway's address lists (allow, deny),
 * checked before any prompt. */
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

#define PASSWORD "Pools-Pass-1"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, NULL};

/* The fixture's upstream is A; B is one more sockgate-server. */
struct pools {
	struct fixture f;
	struct harness_proc b;
	int port_b;
	int dead_port; /* a port nobody listens on */
};

static int spawn_server(struct harness_proc *p, const char *tag, int port)
{
	char portbuf[16];
	const char *argv[] = {"sockgate-server", "-l",    "127.0.0.1", "-p",
			      portbuf,           "--tag", tag,         NULL};

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	if (harness_spawn(p, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL) < 0)
		return -1;
	return harness_read_port(p->err_fd, T);
}

/* A port that refuses: bound, never listened on, kept bound by the test. */
static int dead_port(int *fd)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*fd >= 0);
	assert_int_equal(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(*fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

static int held_fd = -1;

/* members: the upstream list as letters, A and B the servers, D the dead port
 * ("DA": the dead port first, then A). */
static int start(void **state, const char *top, const char *members, const char *extra)
{
	struct pools *p = calloc(1, sizeof(*p));
	static const char *const tag_a[] = {"--tag", "A", NULL};
	char list[256], gw[1024];

	assert_non_null(p);
	*state = p;
	assert_int_equal(fixture_init(&p->f, users), 0);
	assert_int_equal(fixture_upstream(&p->f, tag_a), 0);
	p->port_b = spawn_server(&p->b, "B", 0);
	assert_true(p->port_b > 0);
	p->dead_port = dead_port(&held_fd);
	list[0] = '\0';
	for (const char *m = members; *m != '\0'; m++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"127.0.0.1:%d\"",
			 m == members ? "" : ", ",
			 *m == 'A'   ? p->f.upstream_port
			 : *m == 'B' ? p->port_b
				     : p->dead_port);
	snprintf(gw, sizeof(gw), "upstream = ( %s );\n%s", list, extra);
	/* fixture_config() names the fixture's upstream; a second upstream
	 * setting later in the group would be a duplicate, so write it here. */
	{
		char text[8192];

		snprintf(text, sizeof(text),
			 "%s\ngateways = ( {\n  name = \"test\";\n  listen = ( \"127.0.0.1:0\" );\n"
			 "  credentials = \"%s\";\n  login = { failure_delay = 0; };\n  %s\n} );\n",
			 top != NULL ? top : "", p->f.users, gw);
		assert_int_equal(fixture_write_config(&p->f, text), 0);
	}
	assert_int_equal(fixture_start(&p->f), 0);
	return 0;
}

static int teardown(void **state)
{
	struct pools *p = *state;

	harness_cleanup(&p->b);
	if (held_fd >= 0)
		close(held_fd);
	held_fd = -1;
	*state = &p->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* Logs in, sends one line, returns which upstream answered ('A', 'B') and
 * leaves the session open in *fd (or closes it if fd is NULL). */
static char which(struct fixture *f, int *keep)
{
	char buf[4096];
	int fd = fixture_login(f->port, "alice", PASSWORD);
	char *tag;

	assert_true(fd >= 0);
	send_str(fd, "who\n");
	assert_true(fixture_expect(fd, "I got your message: who\n", buf, sizeof(buf), T) > 0);
	tag = strchr(buf, '[');
	assert_non_null(tag);
	if (keep != NULL)
		*keep = fd;
	else
		close(fd);
	return tag[1];
}

static int setup_roundrobin(void **state)
{
	return start(state, NULL, "AB", "balance = \"roundrobin\";");
}

static void roundrobin_alternates(void **state)
{
	struct pools *p = *state;
	char first = which(&p->f, NULL);

	for (int i = 1; i < 6; i++) {
		char now = which(&p->f, NULL);

		assert_int_not_equal(now, first);
		first = now;
	}
}

static int setup_leastconn(void **state)
{
	return start(state, NULL, "AB", "balance = \"leastconn\";");
}

/* With one session held open, the next goes to the other member. */
static void leastconn_prefers_the_idle_member(void **state)
{
	struct pools *p = *state;
	int held;

	for (int i = 0; i < 4; i++) {
		char busy = which(&p->f, &held), next = which(&p->f, NULL);

		assert_int_not_equal(busy, next);
		close(held);
		assert_int_equal(fixture_log_wait(&p->f, "session closed", NULL, 0), 0);
	}
}

static int setup_source(void **state)
{
	return start(state, NULL, "AB", "balance = \"source\";");
}

/* which() from a chosen source address. */
static char which_from(struct fixture *f, const char *src)
{
	char buf[4096], *tag;
	int fd = harness_connect_from(src, "127.0.0.1", f->port);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\nwho\n");
	assert_true(fixture_expect(fd, "I got your message: who\n", buf, sizeof(buf), T) > 0);
	close(fd);
	tag = strchr(buf, '[');
	assert_non_null(tag);
	return tag[1];
}

/* Each source stays on its member; sources spread over both. */
static void source_keeps_a_client_on_one_member(void **state)
{
	struct pools *p = *state;
	bool seen_a = false, seen_b = false;

	for (int i = 0; i < 8; i++) {
		char src[32], first;

		snprintf(src, sizeof(src), "127.0.0.%d", 20 + i);
		first = which_from(&p->f, src);
		assert_int_equal(which_from(&p->f, src), first);
		seen_a |= first == 'A';
		seen_b |= first == 'B';
	}
	assert_true(seen_a && seen_b);
}

static int setup_dead_first(void **state)
{
	return start(state, NULL, "DA", "");
}

/* The dead member is tried once, marked down (one line), then skipped. */
static void a_refusing_member_is_marked_down_and_skipped(void **state)
{
	struct pools *p = *state;
	char line[1024];

	assert_int_equal(which(&p->f, NULL), 'A');
	assert_int_equal(fixture_log_wait(&p->f, "upstream down", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "gateway=test"));
	assert_int_equal(which(&p->f, NULL), 'A');
	assert_int_equal(which(&p->f, NULL), 'A');
	/* One attempt on the dead port in all: the later sessions went straight to A. */
	assert_int_equal(logtap_count(p->f.log, "upstream connect failed"), 1);
	assert_int_equal(logtap_count(p->f.log, "upstream down"), 1);
}

static int setup_all_dead(void **state)
{
	return start(state, NULL, "D", "");
}

static void when_every_member_is_down_the_client_hears_at_once(void **state)
{
	struct pools *p = *state;
	char buf[4096];

	for (int i = 0; i < 3; i++) {
		int fd = harness_connect("127.0.0.1", p->f.port);

		assert_true(fd >= 0);
		expect_str(fd, "Username: ");
		send_str(fd, "alice\n" PASSWORD "\n");
		assert_true(fixture_expect(fd, "Service unavailable.\n", buf, sizeof(buf), T) > 0);
		close(fd);
	}
	/* Only the first tried it; the others were told without an attempt. */
	assert_int_equal(logtap_count(p->f.log, "upstream connect failed"), 1);
}

static int setup_health(void **state)
{
	return start(state, NULL, "AB",
		     "health = { interval = 0.2; timeout = 0.1; fall = 2; rise = 2; };");
}

/* B stops: the checks mark it down (no session needed); it comes back on its
 * port: they mark it up. */
static void health_checks_follow_a_member(void **state)
{
	struct pools *p = *state;
	char line[1024];

	harness_cleanup(&p->b);
	assert_int_equal(fixture_log_wait(&p->f, "upstream down", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "health check"));
	/* Meanwhile every login goes to A. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(which(&p->f, NULL), 'A');
	assert_true(spawn_server(&p->b, "B", p->port_b) == p->port_b);
	assert_int_equal(fixture_log_wait(&p->f, "upstream up", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "health check passed"));
}

static int setup_lists(void **state)
{
	return start(state, NULL, "A", "allow = ( \"127.0.0.0/8\" ); deny = ( \"127.0.0.66\" );");
}

/* A denied address gets one line before any prompt; others are served. */
static void address_lists_are_checked_before_the_prompt(void **state)
{
	struct pools *p = *state;
	char buf[256], line[1024];
	int fd = harness_connect_from("127.0.0.66", "127.0.0.1", p->f.port);
	ssize_t n;

	assert_true(fd >= 0);
	n = harness_read_all(fd, buf, sizeof(buf) - 1, T);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "Access denied.\n");
	close(fd);
	assert_int_equal(fixture_log_wait(&p->f, "connection refused", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "address not allowed"));
	assert_int_equal(which(&p->f, NULL), 'A');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(roundrobin_alternates, setup_roundrobin, teardown),
		cmocka_unit_test_setup_teardown(leastconn_prefers_the_idle_member, setup_leastconn,
						teardown),
		cmocka_unit_test_setup_teardown(source_keeps_a_client_on_one_member, setup_source,
						teardown),
		cmocka_unit_test_setup_teardown(a_refusing_member_is_marked_down_and_skipped,
						setup_dead_first, teardown),
		cmocka_unit_test_setup_teardown(when_every_member_is_down_the_client_hears_at_once,
						setup_all_dead, teardown),
		cmocka_unit_test_setup_teardown(health_checks_follow_a_member, setup_health,
						teardown),
		cmocka_unit_test_setup_teardown(address_lists_are_checked_before_the_prompt,
						setup_lists, teardown),
	};

	return test_exit(cmocka_run_group_tests_name("pools", tests, NULL, NULL));
}
