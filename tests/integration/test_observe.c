/* test_observe: the daemon's metrics and session recordings, end to end.
 * Metrics: /metrics scraped before and after known traffic (two relayed
 * sessions, a wrong password, a denied source) moves each counter by exactly
 * what happened, the gauges show an open session and the upstream, and
 * promtool accepts the text. Recordings: a relayed session's file replays with
 * `asciinema cat` as exactly what the client saw after the login, holds
 * neither prompt nor password, is the service's alone (0600) and is named by
 * start time and session id, which the journal line names too; a session past
 * max_bytes is relayed whole while its file stops at the cap with a marker;
 * the directory's max_total_bytes removes the oldest closed recordings. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "asciinema_checks.h"
#include "client_checks.h"
#include "fixture.h"

#define PASSWORD  "Observe-Pass-8"
#define T         FIXTURE_TIMEOUT_MS
#define PROMTOOL  "/usr/bin/promtool"
#define ASCIINEMA "/usr/bin/asciinema"
#define SCRAPE    65536

static const char *const users[] = {"alice", PASSWORD, NULL};

struct observe {
	struct fixture f;
	int metrics_port;
	char recordings[PATH_MAX + 16];
};

static int observe_setup(void **state, const char *record)
{
	struct observe *o = calloc(1, sizeof(*o));
	char extra[PATH_MAX + 512], line[1024];
	const char *at;

	assert_non_null(o);
	*state = o;
	assert_int_equal(fixture_init(&o->f, users), 0);
	assert_int_equal(fixture_upstream(&o->f, NULL), 0);
	snprintf(o->recordings, sizeof(o->recordings), "%s/recordings", o->f.dir);
	assert_int_equal(mkdir(o->recordings, 0700), 0);
	snprintf(extra, sizeof(extra),
		 "login = { failure_delay = 0; };\ndeny = [ \"127.0.0.99/32\" ];\n%s%s%s%s",
		 record != NULL ? "record = { directory = \"" : "",
		 record != NULL ? o->recordings : "", record != NULL ? "\"; " : "",
		 record != NULL ? record : "");
	assert_int_equal(fixture_config(&o->f,
					"metrics = { listen = \"127.0.0.1:0\"; };\n"
					"penalties = { noauth = 0; };",
					extra),
			 0);
	assert_int_equal(fixture_start(&o->f), 0);
	/* The listener's port, from its start-up line. */
	o->f.cursor = 0;
	assert_int_equal(fixture_log_wait(&o->f, "GET /metrics on", line, sizeof(line)), 0);
	at = strstr(line, ", port ");
	assert_non_null(at);
	o->metrics_port = atoi(at + 7);
	assert_true(o->metrics_port > 0);
	return 0;
}

static int setup_metrics(void **state)
{
	return observe_setup(state, NULL);
}

static int setup_recording(void **state)
{
	return observe_setup(state, "};");
}

/* 4 KiB per file, 12 KiB for the directory: the smallest caps there are. */
static int setup_capped(void **state)
{
	return observe_setup(state, "max_bytes = 4096; max_total_bytes = 12288; };");
}

static int teardown(void **state)
{
	struct observe *o = *state;

	*state = &o->f;
	return fixture_test_teardown(state, PASSWORD);
}

/* ---- metrics -------------------------------------------------------------- */

/* GET /metrics: the body, or the test fails. */
static char *scrape(struct observe *o)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				  "Connection: close\r\n\r\n";
	char *resp = malloc(SCRAPE);
	int fd = harness_connect("127.0.0.1", o->metrics_port);
	ssize_t n;
	char *body;

	assert_non_null(resp);
	assert_true(fd >= 0);
	n = harness_exchange(fd, req, sizeof(req) - 1, resp, SCRAPE - 1, T);
	close(fd);
	assert_true(n > 0);
	resp[n] = '\0';
	assert_memory_equal(resp, "HTTP/1.1 200", 12);
	body = strstr(resp, "\r\n\r\n");
	assert_non_null(body);
	memmove(resp, body + 4, strlen(body + 4) + 1);
	return resp;
}

/* The value of the sample that starts with name_and_labels (the whole name and
 * label set, as rendered), or the test fails. */
static double sample(const char *text, const char *name_and_labels)
{
	size_t n = strlen(name_and_labels);

	for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, name_and_labels, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	fail_msg("no sample %s in:\n%s", name_and_labels, text);
	return 0;
}

static double delta(const char *before, const char *after, const char *name_and_labels)
{
	return sample(after, name_and_labels) - sample(before, name_and_labels);
}

/* A session logged in from src that moved "hello\n" in and the echo out. */
static int relayed_session(struct observe *o, const char *src)
{
	int fd = connect_from(src, o->f.port);

	expect_str(fd, "Username: ");
	send_str(fd, "alice\n" PASSWORD "\n");
	expect_str(fd, "You are now logged in.\n");
	send_str(fd, "hello\n");
	expect_str(fd, "I got your message: hello\n");
	return fd;
}

static void wait_log(struct observe *o, const char *needle)
{
	char line[2048];

	assert_int_equal(fixture_log_wait(&o->f, needle, line, sizeof(line)), 0);
}

#define G "{gateway=\"test\""

static void counters_move_by_the_traffic(void **state)
{
	struct observe *o = *state;
	char *before, *after;
	int fd;

	before = scrape(o);
	/* Two relayed sessions: 6 bytes in and 26 out each. */
	for (int i = 0; i < 2; i++) {
		fd = relayed_session(o, i == 0 ? "127.0.0.11" : "127.0.0.12");
		close(fd);
		wait_log(o, "session closed");
	}
	/* A wrong password, then the client leaves. */
	fd = connect_from("127.0.0.13", o->f.port);
	expect_str(fd, "Username: ");
	send_str(fd, "alice\nwrong-password\n");
	wait_log(o, "login failed");
	close(fd);
	wait_log(o, "session closed");
	/* A denied source. */
	fd = connect_from("127.0.0.99", o->f.port);
	(void)read_to_eof(fd);
	close(fd);
	wait_log(o, "connection refused");
	after = scrape(o);

	assert_true(delta(before, after, "sockgate_connections_accepted_total" G "}") == 4);
	assert_true(delta(before, after,
			  "sockgate_connections_refused_total" G ",reason=\"denied\"}") == 1);
	assert_true(delta(before, after,
			  "sockgate_connections_refused_total" G ",reason=\"penalised\"}") == 0);
	assert_true(delta(before, after, "sockgate_logins_total" G ",result=\"ok\"}") == 2);
	assert_true(delta(before, after,
			  "sockgate_logins_total" G
			  ",result=\"failed\",reason=\"bad_credentials\"}") == 1);
	assert_true(delta(before, after, "sockgate_relayed_bytes_total" G ",direction=\"in\"}") ==
		    12);
	assert_true(delta(before, after, "sockgate_relayed_bytes_total" G ",direction=\"out\"}") ==
		    52);
	assert_true(delta(before, after, "sockgate_session_duration_seconds_count" G "}") == 2);
	assert_true(delta(before, after, "sockgate_password_check_duration_seconds_count") == 3);
	assert_true(delta(before, after, "sockgate_upstream_connect_failures_total" G "}") == 0);
	assert_true(sample(after, "process_open_fds") > 0);
	free(before);
	free(after);
}

/* Gauges come from the main loop once a second: wait (bounded) for a snapshot
 * that shows the open session. */
static void gauges_show_sessions_and_upstreams(void **state)
{
	struct observe *o = *state;
	long long deadline = harness_now_ms() + T;
	char *text = NULL, upstream[160];
	int fd = relayed_session(o, "127.0.0.21");

	for (;;) {
		free(text);
		text = scrape(o);
		if (sample(text, "sockgate_sessions" G ",state=\"relaying\"}") == 1)
			break;
		assert_true(harness_now_ms() < deadline);
		(void)harness_read_some(fd, upstream, sizeof(upstream), 50); /* a bounded pause */
	}
	assert_true(sample(text, "sockgate_sessions" G ",state=\"logging_in\"}") == 0);
	snprintf(upstream, sizeof(upstream),
		 "sockgate_upstream_up" G ",target=\"\",upstream=\"127.0.0.1:%d\"}",
		 o->f.upstream_port);
	assert_true(sample(text, upstream) == 1);
	assert_true(sample(text, "sockgate_password_check_queue") == 0);
	free(text);
	close(fd);
}

/* promtool (Debian's prometheus package) parses the text and finds nothing
 * against the conventions. */
static void promtool_checks_the_scrape(void **state)
{
	struct observe *o = *state;
	const char *const argv[] = {PROMTOOL, "check", "metrics", NULL};
	struct harness_proc p;
	char out[8192];
	ssize_t n;
	char *text;
	int fd;

	if (access(PROMTOOL, X_OK) != 0)
		test_skip("no %s (Debian's prometheus package)", PROMTOOL);
	fd = relayed_session(o, "127.0.0.31");
	close(fd);
	wait_log(o, "session closed");
	text = scrape(o);
	assert_int_equal(harness_spawn(&p, argv, NULL, 0), 0);
	assert_int_equal(harness_write_all(p.in_fd, text, strlen(text), T), 0);
	close(p.in_fd);
	p.in_fd = -1;
	n = harness_read_all(p.err_fd, out, sizeof(out) - 1, T);
	out[n > 0 ? n : 0] = '\0';
	assert_int_equal(harness_wait_exit(&p, T), 0);
	if (p.exit_code != 0 || n != 0)
		fail_msg("promtool exit %d: %s", p.exit_code, out);
	harness_cleanup(&p);
	free(text);
}

/* ---- recordings ----------------------------------------------------------- */

/* Reads a whole file (NUL-terminated); the caller frees it. NULL if absent. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long size;

	if (f == NULL)
		return NULL;
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	buf = malloc((size_t)size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	buf[size] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)size;
	return buf;
}

/* The recording the log names for the session just closed, once its writer
 * has closed it (the final marker is its last line): each time the directory
 * says a file was closed (inotify), it is looked at again. */
static char *finished_recording(struct observe *o, char *path, size_t cap)
{
	long long deadline = harness_now_ms() + T;
	char line[2048], *at, *text;
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	assert_true(in >= 0);
	assert_true(inotify_add_watch(in, o->recordings, IN_CLOSE_WRITE) >= 0);
	assert_int_equal(fixture_log_wait(&o->f, "session recorded", line, sizeof(line)), 0);
	at = strstr(line, o->recordings);
	assert_non_null(at);
	snprintf(path, cap, "%.*s", (int)strcspn(at, " \n\""), at);
	wait_log(o, "session closed");
	for (;;) {
		struct pollfd p = {.fd = in, .events = POLLIN};
		char events[4096];

		text = slurp(path, NULL);
		if (text != NULL && strstr(text, "\"m\", \"session closed") != NULL)
			break;
		free(text);
		assert_true(harness_now_ms() < deadline);
		(void)poll(&p, 1, (int)(deadline - harness_now_ms()));
		while (read(in, events, sizeof(events)) > 0)
			;
	}
	close(in);
	return text;
}

static void recording_replays_what_the_client_saw(void **state)
{
	struct observe *o = *state;
	char path[PATH_MAX + 64], *text, shown[1024], *name;
	size_t n;
	struct stat st;
	int fd;

	if (access(ASCIINEMA, X_OK) != 0 || access("/usr/bin/setsid", X_OK) != 0)
		test_skip("no %s or setsid (Debian's asciinema, util-linux)", ASCIINEMA);
	fd = relayed_session(o, "127.0.0.41");
	send_str(fd, "second line\n");
	expect_str(fd, "I got your message: second line\n");
	close(fd);
	text = finished_recording(o, path, sizeof(path));

	/* Only the relay: neither the prompts nor the password. */
	assert_null(strstr(text, PASSWORD));
	assert_null(strstr(text, "Username"));
	assert_null(strstr(text, "logged in"));
	assert_non_null(strstr(text, "\"version\": 2"));
	assert_non_null(strstr(text, "\"user\": \"alice\""));
	assert_non_null(strstr(text, "\"i\", \"hello\\n\""));
	/* The service's alone, named YYYYMMDDTHHMMSSZ-ID.cast. */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	name = strrchr(path, '/') + 1;
	assert_int_equal(strspn(name, "0123456789"), 8);
	assert_int_equal(name[8], 'T');
	assert_int_equal(name[15], 'Z');
	assert_int_equal(name[16], '-');
	assert_non_null(strstr(name, ".cast"));

	n = run_asciinema(ASCIINEMA, "cat", NULL, path, shown, sizeof(shown) - 1);
	shown[n] = '\0';
	assert_string_equal(shown, "I got your message: hello\nI got your message: second line\n");
	free(text);
}

/* The session goes on past max_bytes and gets every byte; its file stops at
 * the cap, says so, and is closed with the session. */
static void recording_stops_at_its_cap(void **state)
{
	struct observe *o = *state;
	char path[PATH_MAX + 64], line[128], *text;
	size_t len;
	int fd = relayed_session(o, "127.0.0.51");

	for (int i = 0; i < 200; i++) {
		snprintf(line, sizeof(line), "line %03d of a session longer than its recording\n",
			 i);
		send_str(fd, line);
		snprintf(line, sizeof(line),
			 "I got your message: line %03d of a session longer than its recording\n",
			 i);
		expect_str(fd, line);
	}
	close(fd);
	text = finished_recording(o, path, sizeof(path));
	free(text);
	text = slurp(path, &len);
	assert_true(len <= 4096);
	assert_non_null(strstr(text, "\"m\", \"recording stopped: size cap\""));
	assert_non_null(strstr(text, "bytes not recorded after the stop"));
	free(text);
}

static int count_recordings(const char *dir, uint64_t *total)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	*total = 0;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX + 300];
		struct stat st;

		if (strstr(e->d_name, ".cast") == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		assert_int_equal(stat(path, &st), 0);
		*total += (uint64_t)st.st_size;
		n++;
	}
	closedir(d);
	return n;
}

/* Five capped sessions in a directory that holds three: the oldest go. */
static void directory_cap_removes_the_oldest(void **state)
{
	struct observe *o = *state;
	char path[PATH_MAX + 64], first[PATH_MAX + 64] = "", line[128], *text;
	uint64_t total;

	for (int s = 0; s < 5; s++) {
		int fd = relayed_session(o, "127.0.0.61");

		for (int i = 0; i < 80; i++) {
			snprintf(line, sizeof(line), "session %d line %03d, to fill the file\n", s,
				 i);
			send_str(fd, line);
		}
		snprintf(line, sizeof(line),
			 "I got your message: session %d line 079, to fill the file\n", s);
		expect_str(fd, line);
		close(fd);
		text = finished_recording(o, path, sizeof(path));
		free(text);
		if (s == 0)
			snprintf(first, sizeof(first), "%s", path);
	}
	assert_true(count_recordings(o->recordings, &total) <= 3);
	assert_true(total <= 12288);
	assert_int_equal(access(first, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	/* The newest one is whole. */
	assert_int_equal(access(path, F_OK), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(counters_move_by_the_traffic, setup_metrics,
						teardown),
		cmocka_unit_test_setup_teardown(gauges_show_sessions_and_upstreams, setup_metrics,
						teardown),
		cmocka_unit_test_setup_teardown(promtool_checks_the_scrape, setup_metrics,
						teardown),
		cmocka_unit_test_setup_teardown(recording_replays_what_the_client_saw,
						setup_recording, teardown),
		cmocka_unit_test_setup_teardown(recording_stops_at_its_cap, setup_capped, teardown),
		cmocka_unit_test_setup_teardown(directory_cap_removes_the_oldest, setup_capped,
						teardown),
	};

	return test_exit(cmocka_run_group_tests_name("observe", tests, NULL, NULL));
}
