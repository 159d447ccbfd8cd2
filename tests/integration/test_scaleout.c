/* test_scaleout: two sockgate instances behind one HAProxy (Debian's), as
 * sockgate(8) "SCALING OUT" describes: PROXY protocol v2 in, HAProxy's own
 * health checks (with the header, as a LOCAL command), round robin. Both
 * instances serve logins; when one is killed, every new login still gets
 * through (HAProxy retries on the other, then its checks take the dead one
 * out); penalties are per instance, as the man page says. */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
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

#define PASSWORD "Scale-Pass-8"
#define HAPROXY  "/usr/sbin/haproxy"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, NULL};

struct scale {
	struct fixture node[2];
	struct harness_proc haproxy;
	int front;
};

static int setup(void **state)
{
	struct scale *p = calloc(1, sizeof(*p));
	static const char *const tag[2][3] = {{"--tag", "n1", NULL}, {"--tag", "n2", NULL}};
	char cfg[2048], path[PATH_MAX + 32];
	const char *argv[] = {HAPROXY, "-db", "-f", path, NULL};
	long long deadline;
	int fd;

	if (access(HAPROXY, X_OK) != 0)
		test_skip("no %s (Debian package haproxy)", HAPROXY);
	assert_non_null(p);
	*state = p;
	for (int i = 0; i < 2; i++)
		assert_int_equal(fixture_setup(&p->node[i], users, tag[i], NULL,
					       "proxy_protocol = { from = \"127.0.0.1\"; };\n"
					       "login = { failure_delay = 0; };"),
				 0);
	p->front = free_port();
	snprintf(cfg, sizeof(cfg),
		 "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 2s\n"
		 "  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\n"
		 "listen gateways\n  bind 127.0.0.1:%d\n  balance roundrobin\n"
		 "  default-server send-proxy-v2 check-send-proxy check inter 200ms fall 1 rise 1\n"
		 "  server n1 127.0.0.1:%d\n  server n2 127.0.0.1:%d\n",
		 p->front, p->node[0].port, p->node[1].port);
	snprintf(path, sizeof(path), "%s/haproxy.cfg", p->node[0].dir);
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs(cfg, f);
		fclose(f);
	}
	assert_int_equal(harness_spawn(&p->haproxy, argv, NULL, HARNESS_STDIN_NULL), 0);
	deadline = harness_now_ms() + T;
	while ((fd = harness_connect("127.0.0.1", p->front)) < 0) {
		assert_true(harness_now_ms() < deadline);
		assert_int_equal(harness_wait_exit(&p->haproxy, 20), -1);
	}
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	struct scale *p = *state;
	int rc = 0;

	harness_cleanup(&p->haproxy);
	for (int i = 0; i < 2; i++) {
		struct fixture *f = &p->node[i];

		if (f->daemon.pid > 0 && !f->daemon.exited)
			rc |= fixture_finish(f, PASSWORD);
		else
			fixture_teardown(f, 0);
	}
	free(p);
	return rc;
}

/* A login through HAProxy; returns the instance that served it (1 or 2). */
static int login_through(struct scale *p)
{
	char buf[4096], *tag;
	int fd = harness_connect("127.0.0.1", p->front);

	assert_true(fd >= 0);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\nwhich node\n");
	assert_true(fixture_expect(fd, "I got your message: which node\n", buf, sizeof(buf), T) >
		    0);
	close(fd);
	tag = strstr(buf, "[n");
	assert_non_null(tag);
	return tag[2] - '0';
}

static void killing_one_instance_loses_no_new_login(void **state)
{
	struct scale *p = *state;
	bool seen[3] = {false, false, false};

	for (int i = 0; i < 6; i++)
		seen[login_through(p)] = true;
	assert_true(seen[1] && seen[2]);
	/* n1 dies the hard way: no goodbye to HAProxy. */
	assert_int_equal(kill(p->node[0].daemon.pid, SIGKILL), 0);
	assert_int_equal(harness_wait_exit(&p->node[0].daemon, T), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(login_through(p), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(killing_one_instance_loses_no_new_login, setup,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("scaleout", tests, NULL, NULL));
}
