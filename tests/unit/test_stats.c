/* test_stats: the metrics' registry and its text: counters kept by name, the
 * reason texts, histogram buckets, sums and counts, the gauge snapshot (a copy),
 * label escaping, the structure of the exposition, and exact counts under
 * concurrent updates. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testmain.h"

#include "stats.h"

static struct stats *registry(void)
{
	struct errbuf err;
	struct stats *st = stats_create(&err);

	assert_non_null(st);
	return st;
}

/* The exposition as a string the caller frees. */
static char *render(struct stats *st)
{
	char *text;
	size_t len;

	assert_int_equal(stats_render(st, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_true(len > 0 && text[len - 1] == '\n');
	return text;
}

/* Whether text holds line as a whole line. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

#define assert_line(text, line)                                                                    \
	do {                                                                                       \
		if (!has_line((text), (line)))                                                     \
			fail_msg("missing line: %s\n--- exposition:\n%s", (line), (text));         \
	} while (0)

static void gateways_kept_by_name(void **state)
{
	struct stats *st = registry();
	struct stats_gateway *a = stats_gateway_get(st, "ssh");
	struct stats_gateway *b = stats_gateway_get(st, "telnet");
	char *text;

	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	assert_string_equal(a->name, "ssh");
	stats_add(&a->bytes_in, 40);
	stats_inc(&a->accepted);
	/* A reload makes the gateway again: same counters, never reset. */
	assert_ptr_equal(stats_gateway_get(st, "ssh"), a);
	assert_int_equal(stats_read(&a->bytes_in), 40);
	assert_int_equal(stats_read(&b->bytes_in), 0);

	text = render(st);
	assert_line(text, "sockgate_connections_accepted_total{gateway=\"ssh\"} 1");
	assert_line(text, "sockgate_connections_accepted_total{gateway=\"telnet\"} 0");
	assert_line(text, "sockgate_relayed_bytes_total{gateway=\"ssh\",direction=\"in\"} 40");
	/* In the order the gateways were made. */
	assert_true(strstr(text, "{gateway=\"ssh\"}") < strstr(text, "{gateway=\"telnet\"}"));
	free(text);
	stats_free(st);
}

static void login_reason_texts(void **state)
{
	static const struct {
		const char *text;
		enum stats_login_reason reason;
	} cases[] = {
		{"bad credentials", STATS_LOGIN_BAD_CREDENTIALS},
		{"wrong verification code", STATS_LOGIN_WRONG_CODE},
		{"verification code already used", STATS_LOGIN_CODE_REUSED},
		{"no second factor enrolled", STATS_LOGIN_NO_SECOND_FACTOR},
		{"account locked", STATS_LOGIN_LOCKED},
		{"account expired", STATS_LOGIN_EXPIRED},
		{"target not permitted", STATS_LOGIN_NOT_PERMITTED},
		{"address not allowed for this user", STATS_LOGIN_WRONG_NETWORK},
		{"account refused by PAM", STATS_LOGIN_ACCOUNT_REFUSED},
		{"password change required", STATS_LOGIN_PASSWORD_CHANGE},
		{"the authentication service is unavailable", STATS_LOGIN_PAM_ERROR},
		{"PAM could not start the service", STATS_LOGIN_PAM_ERROR},
		{"PAM failed", STATS_LOGIN_PAM_ERROR},
		{"denied", STATS_LOGIN_OTHER},
		{"Bad credentials", STATS_LOGIN_OTHER},
		{"bad credentials (client gone)", STATS_LOGIN_BAD_CREDENTIALS},
		{"bad credentialsx", STATS_LOGIN_OTHER},
		{"", STATS_LOGIN_OTHER},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(stats_login_reason(cases[i].text), cases[i].reason);
	assert_int_equal(stats_login_reason(NULL), STATS_LOGIN_OTHER);
}

static void refusals_and_logins(void **state)
{
	struct stats *st = registry();
	struct stats_gateway *g = stats_gateway_get(st, "gw");
	char *text;

	stats_refused(g, STATS_REFUSED_PENALISED);
	stats_refused(g, STATS_REFUSED_PENALISED);
	stats_refused(g, STATS_REFUSED_BAD_PROXY_HEADER);
	stats_refused(g, (enum stats_refusal)99); /* out of range: other */
	stats_inc(&g->logins_ok);
	stats_login_failed(g, stats_login_reason("wrong verification code"));
	stats_login_failed(g, stats_login_reason("no such text"));
	stats_login_failed(g, (enum stats_login_reason) - 1);
	stats_inc(&g->tls_failed);
	stats_add(&g->upstream_connect_failures, 3);

	text = render(st);
	assert_line(text,
		    "sockgate_connections_refused_total{gateway=\"gw\",reason=\"penalised\"} 2");
	assert_line(
		text,
		"sockgate_connections_refused_total{gateway=\"gw\",reason=\"bad_proxy_header\"} 1");
	assert_line(text, "sockgate_connections_refused_total{gateway=\"gw\",reason=\"other\"} 1");
	assert_line(text,
		    "sockgate_connections_refused_total{gateway=\"gw\",reason=\"startups\"} 0");
	assert_line(text, "sockgate_logins_total{gateway=\"gw\",result=\"ok\"} 1");
	assert_line(
		text,
		"sockgate_logins_total{gateway=\"gw\",result=\"failed\",reason=\"wrong_code\"} 1");
	assert_line(text,
		    "sockgate_logins_total{gateway=\"gw\",result=\"failed\",reason=\"other\"} 2");
	assert_line(
		text,
		"sockgate_logins_total{gateway=\"gw\",result=\"failed\",reason=\"pam_error\"} 0");
	assert_line(text, "sockgate_tls_handshakes_total{gateway=\"gw\",result=\"failed\"} 1");
	assert_line(text, "sockgate_tls_handshakes_total{gateway=\"gw\",result=\"ok\"} 0");
	assert_line(text, "sockgate_upstream_connect_failures_total{gateway=\"gw\"} 3");
	free(text);
	stats_free(st);
}

static void session_histogram(void **state)
{
	struct stats *st = registry();
	struct stats_gateway *g = stats_gateway_get(st, "gw");
	char *text;

	/* Bounds are inclusive ("le"). */
	stats_observe_session(g, 0);
	stats_observe_session(g, 1000);
	stats_observe_session(g, 1001);
	stats_observe_session(g, 299999);
	stats_observe_session(g, 86400000);
	stats_observe_session(g, 86400001);

	text = render(st);
	assert_line(text, "# TYPE sockgate_session_duration_seconds histogram");
	assert_line(text, "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"1\"} 2");
	assert_line(text, "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"10\"} 3");
	assert_line(text, "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"60\"} 3");
	assert_line(text, "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"300\"} 4");
	assert_line(text,
		    "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"14400\"} 4");
	assert_line(text,
		    "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"86400\"} 5");
	assert_line(text, "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"+Inf\"} 6");
	/* 0 + 1 + 1.001 + 299.999 + 86400 + 86400.001 */
	assert_line(text, "sockgate_session_duration_seconds_sum{gateway=\"gw\"} 173102.001");
	assert_line(text, "sockgate_session_duration_seconds_count{gateway=\"gw\"} 6");
	free(text);
	stats_free(st);
}

static void check_histogram(void **state)
{
	struct stats *st = registry();
	char *text = render(st);

	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"+Inf\"} 0");
	assert_line(text, "sockgate_password_check_duration_seconds_sum 0.000000");
	assert_line(text, "sockgate_password_check_duration_seconds_count 0");
	free(text);

	stats_observe_check(st, 999);
	stats_observe_check(st, 1000);
	stats_observe_check(st, 2501);
	stats_observe_check(st, 2500000);
	stats_observe_check(st, 7000001);
	text = render(st);
	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"0.001\"} 2");
	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"0.0025\"} 2");
	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"0.005\"} 3");
	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"1\"} 3");
	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"2.5\"} 4");
	assert_line(text, "sockgate_password_check_duration_seconds_bucket{le=\"+Inf\"} 5");
	assert_line(text, "sockgate_password_check_duration_seconds_sum 9.504501");
	assert_line(text, "sockgate_password_check_duration_seconds_count 5");
	free(text);
	stats_free(st);
}

static void gauges_are_a_copy(void **state)
{
	struct stats *st = registry();
	char name[16], target[16], address[32];
	struct stats_gauge_gateway gws[3];
	struct stats_gauge_upstream ups[3];
	struct stats_gauges g = {
		.gateways = gws,
		.n_gateways = 3,
		.upstreams = ups,
		.n_upstreams = 3,
		.check_queue = 7,
		.penalised_sources = 2,
	};
	char *text;

	/* Before the first snapshot: the global gauges at 0, no series by name. */
	text = render(st);
	assert_line(text, "sockgate_password_check_queue 0");
	assert_line(text, "sockgate_penalised_sources 0");
	assert_null(strstr(text, "sockgate_sessions{"));
	free(text);

	strcpy(name, "ssh");
	strcpy(target, "db");
	strcpy(address, "10.0.0.5:22");
	gws[0] = (struct stats_gauge_gateway){name, 2, 5};
	gws[1] = (struct stats_gauge_gateway){"telnet", 0, 1};
	gws[2] = (struct stats_gauge_gateway){"ssh", 9, 9}; /* a duplicate: ignored */
	ups[0] = (struct stats_gauge_upstream){name, "", address, true};
	ups[1] = (struct stats_gauge_upstream){name, target, "10.0.0.6:22", false};
	ups[2] = (struct stats_gauge_upstream){"ssh", "", "10.0.0.5:22", false}; /* duplicate */
	assert_int_equal(stats_set_gauges(st, &g), 0);
	/* The caller's memory may change or go at once. */
	memset(name, 'X', sizeof(name) - 1);
	memset(address, 'Y', sizeof(address) - 1);
	memset(gws, 0, sizeof(gws));
	memset(ups, 0, sizeof(ups));

	text = render(st);
	assert_line(text, "sockgate_sessions{gateway=\"ssh\",state=\"logging_in\"} 2");
	assert_line(text, "sockgate_sessions{gateway=\"ssh\",state=\"relaying\"} 5");
	assert_line(text, "sockgate_sessions{gateway=\"telnet\",state=\"relaying\"} 1");
	assert_null(strstr(text, "} 9\n"));
	assert_line(text,
		    "sockgate_upstream_up{gateway=\"ssh\",target=\"\",upstream=\"10.0.0.5:22\"} 1");
	assert_line(
		text,
		"sockgate_upstream_up{gateway=\"ssh\",target=\"db\",upstream=\"10.0.0.6:22\"} 0");
	assert_null(strstr(text, "upstream=\"10.0.0.5:22\"} 0"));
	assert_line(text, "sockgate_password_check_queue 7");
	assert_line(text, "sockgate_penalised_sources 2");
	assert_null(strstr(text, "XXX"));
	free(text);

	/* A new snapshot replaces the old one wholly. */
	g = (struct stats_gauges){.check_queue = 1};
	assert_int_equal(stats_set_gauges(st, &g), 0);
	text = render(st);
	assert_null(strstr(text, "sockgate_sessions{"));
	assert_null(strstr(text, "sockgate_upstream_up{"));
	assert_line(text, "sockgate_password_check_queue 1");
	assert_line(text, "sockgate_penalised_sources 0");
	free(text);
	stats_free(st);
}

static void label_escaping(void **state)
{
	struct stats *st = registry();
	struct stats_gauge_upstream up = {"a\"b\\c\nd", "t\\", "[2001:db8::1]:22", true};
	struct stats_gauges g = {.upstreams = &up, .n_upstreams = 1};
	char *text;

	stats_inc(&stats_gateway_get(st, "a\"b\\c\nd")->accepted);
	stats_inc(&stats_gateway_get(st, "grüße")->accepted);
	assert_int_equal(stats_set_gauges(st, &g), 0);
	text = render(st);
	assert_line(text, "sockgate_connections_accepted_total{gateway=\"a\\\"b\\\\c\\nd\"} 1");
	assert_line(text, "sockgate_connections_accepted_total{gateway=\"grüße\"} 1");
	assert_line(text, "sockgate_upstream_up{gateway=\"a\\\"b\\\\c\\nd\",target=\"t\\\\\","
			  "upstream=\"[2001:db8::1]:22\"} 1");
	free(text);
	stats_free(st);
}

/* The family a sample belongs to: its name less a histogram's suffix. */
static void family_of(const char *sample, const char *type, char *out, size_t len)
{
	size_t n = strcspn(sample, "{ ");
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	size_t i, s;

	snprintf(out, len, "%.*s", (int)n, sample);
	if (strcmp(type, "histogram") != 0)
		return;
	for (i = 0; i < 3; i++) {
		s = strlen(suffixes[i]);
		if (n > s && strcmp(out + n - s, suffixes[i]) == 0) {
			out[n - s] = '\0';
			return;
		}
	}
}

/* Every family: HELP then TYPE, then only its own samples, and never twice; the
 * process figures and the build are there. */
static void exposition_structure(void **state)
{
	struct stats *st = registry();
	char *text, *line, *save = NULL;
	char family[128] = "", type[32] = "", seen[4096] = " ", name[128], key[136];
	unsigned families = 0;

	stats_inc(&stats_gateway_get(st, "gw")->accepted);
	text = render(st);
	assert_line(text, "sockgate_build_info{version=\"" SOCKGATE_VERSION "\"} 1");
	assert_non_null(strstr(text, "\nprocess_open_fds "));
	assert_non_null(strstr(text, "\nprocess_resident_memory_bytes "));
	assert_non_null(strstr(text, "\nprocess_threads "));
	assert_non_null(strstr(text, "\nprocess_cpu_seconds_total "));
	assert_non_null(strstr(text, "\nprocess_start_time_seconds "));

	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			assert_int_equal(sscanf(line + 7, "%127s", family), 1);
			snprintf(key, sizeof(key), " %s ", family);
			if (strstr(seen, key) != NULL)
				fail_msg("family %s twice", family);
			assert_true(strlen(seen) + strlen(key) < sizeof(seen));
			strcat(seen, key + 1);
			type[0] = '\0';
			families++;
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
			assert_string_equal(name, family);
		} else {
			if (type[0] == '\0')
				fail_msg("sample before its TYPE: %s", line);
			family_of(line, type, name, sizeof(name));
			if (strcmp(name, family) != 0)
				fail_msg("sample %s under family %s", line, family);
		}
	}
	assert_true(families >= 20);
	free(text);
	stats_free(st);
}

#define THREADS 4
#define ROUNDS  100000

static void *bump(void *arg)
{
	struct stats_gateway *g = arg;
	unsigned i;

	for (i = 0; i < ROUNDS; i++) {
		stats_add(&g->bytes_out, 3);
		stats_observe_session(g, i % 2 ? 500 : 5000);
	}
	return NULL;
}

/* Relaxed atomics lose nothing: the totals are exact once the writers are done,
 * and a scrape while they run still sees consistent buckets and count. */
static void concurrent_updates(void **state)
{
	struct stats *st = registry();
	struct stats_gateway *g = stats_gateway_get(st, "gw");
	pthread_t t[THREADS];
	char *text, line[160];
	unsigned i;

	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, bump, g), 0);
	text = render(st);
	free(text);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);

	text = render(st);
	snprintf(line, sizeof(line),
		 "sockgate_relayed_bytes_total{gateway=\"gw\",direction=\"out\"} %u",
		 3 * THREADS * ROUNDS);
	assert_line(text, line);
	snprintf(line, sizeof(line),
		 "sockgate_session_duration_seconds_bucket{gateway=\"gw\",le=\"1\"} %u",
		 THREADS * ROUNDS / 2);
	assert_line(text, line);
	snprintf(line, sizeof(line), "sockgate_session_duration_seconds_count{gateway=\"gw\"} %u",
		 THREADS * ROUNDS);
	assert_line(text, line);
	snprintf(line, sizeof(line), "sockgate_session_duration_seconds_sum{gateway=\"gw\"} %u.000",
		 THREADS * ROUNDS / 2 * 5 + THREADS * ROUNDS / 2 / 2);
	assert_line(text, line);
	free(text);
	stats_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gateways_kept_by_name), cmocka_unit_test(login_reason_texts),
		cmocka_unit_test(refusals_and_logins),   cmocka_unit_test(session_histogram),
		cmocka_unit_test(check_histogram),       cmocka_unit_test(gauges_are_a_copy),
		cmocka_unit_test(label_escaping),        cmocka_unit_test(exposition_structure),
		cmocka_unit_test(concurrent_updates),
	};

	return test_exit(cmocka_run_group_tests_name("stats", tests, NULL, NULL));
}
