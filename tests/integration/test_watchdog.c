/* test_watchdog: the daemon tells systemd's watchdog it is alive (WATCHDOG=1)
 * only while every event loop and every password-check thread shows progress.
 * A fault injected with kill -USR2 (a build with -DSOCKGATE_FAULTS=ON, see
 * src/core/fault.h) wedges a worker or a check thread: the pings stop and the
 * log names the thread; lifting the fault brings them back. Without faults
 * compiled in, the test reports itself skipped (exit 77). */
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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
#include "fault.h"
#include "fixture.h"

#define PASSWORD "Correct-Horse-7"
/* Pings every 250 ms; a thread counts as stalled after 500 ms. */
#define WATCHDOG_MS 1000

static const char *const users[] = {"alice", PASSWORD, NULL};

static int setup(void **state)
{
	static const char *const env[] = {"WATCHDOG_USEC=1000000", NULL};
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	assert_int_equal(fixture_init(f, users), 0);
	assert_int_equal(fixture_upstream(f, NULL), 0);
	assert_int_equal(fixture_config(f, "workers = 2;\nauth_threads = 2;", ""), 0);
	assert_int_equal(fixture_start_env(f, NULL, env), 0);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = f->daemon.exited ? f->daemon.exit_code : fixture_stop(f);

	fixture_teardown(f, rc != 0);
	free(f);
	assert_int_equal(rc, 0);
	return 0;
}

static void inject(struct fixture *f, enum fault_kind kind)
{
	union sigval v = {.sival_int = kind};

	assert_int_equal(sigqueue(f->daemon.pid, SIGUSR2, v), 0);
}

/* Forgets the notifications that came so far. */
static void drain_notifications(struct fixture *f)
{
	char buf[1024];

	while (recv(f->notify_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* A wedged thread stops the pings within the stall limit and is named in the
 * log; once it runs again, the pings come back and the daemon serves. */
static void check_stall(struct fixture *f, enum fault_kind kind, const char *thread)
{
	char line[512], want[64];
	int fd;

	assert_int_equal(harness_notify_wait(f->notify_fd, "WATCHDOG=1", FIXTURE_TIMEOUT_MS), 0);
	inject(f, kind);
	if (kind == FAULT_HANG_AUTH) {
		/* Nothing else to notice: a login still gets checked on the other
		 * thread (there are two). */
		fd = fixture_login(f->port, "alice", PASSWORD);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(fixture_log_wait(f, "thread stalled", line, sizeof(line)), 0);
	snprintf(want, sizeof(want), "thread=%s", thread);
	assert_non_null(strstr(line, want));
	/* The stall was seen at a ping's turn: no ping after it, for two whole
	 * intervals, which would have made systemd restart the daemon. */
	drain_notifications(f);
	assert_int_equal(harness_notify_wait(f->notify_fd, "WATCHDOG=1", 2 * WATCHDOG_MS), -1);

	inject(f, FAULT_LIFT);
	assert_int_equal(fixture_log_wait(f, "watchdog resumed", NULL, 0), 0);
	assert_int_equal(harness_notify_wait(f->notify_fd, "WATCHDOG=1", FIXTURE_TIMEOUT_MS), 0);
	fd = fixture_login(f->port, "alice", PASSWORD);
	assert_true(fd >= 0);
	close(fd);
}

static void wedged_worker_stops_the_watchdog(void **state)
{
	check_stall(*state, FAULT_HANG_WORKER, "sockgate-w0");
}

static void wedged_check_thread_stops_the_watchdog(void **state)
{
	check_stall(*state, FAULT_HANG_AUTH, "sockgate-auth");
}

/* Busy is not stalled: while sessions log in and relay, the pings go on. */
static void a_busy_daemon_keeps_pinging(void **state)
{
	struct fixture *f = *state;
	enum { N = 8 };
	int fds[N];

	assert_int_equal(harness_notify_wait(f->notify_fd, "WATCHDOG=1", FIXTURE_TIMEOUT_MS), 0);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < N; i++) {
			fds[i] = fixture_login(f->port, "alice", PASSWORD);
			assert_true(fds[i] >= 0);
		}
		for (int i = 0; i < N; i++) {
			send_str(fds[i], "hello\n");
			expect_str(fds[i], "I got your message: hello\n");
			close(fds[i]);
		}
		assert_int_equal(harness_notify_wait(f->notify_fd, "WATCHDOG=1", 2 * WATCHDOG_MS),
				 0);
	}
	assert_false(logtap_contains(f->log, "thread stalled"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(wedged_worker_stops_the_watchdog, setup, teardown),
		cmocka_unit_test_setup_teardown(wedged_check_thread_stops_the_watchdog, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_busy_daemon_keeps_pinging, setup, teardown),
	};

	if (!fault_enabled()) {
		fprintf(stderr, "test_watchdog: skipped: built without -DSOCKGATE_FAULTS=ON\n");
		return TEST_EXIT_SKIPPED;
	}
	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
