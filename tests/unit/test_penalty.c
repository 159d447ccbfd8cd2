/* test_penalty: per-source penalties and login counts, on an explicit clock:
 * accumulation, the threshold, the cap, expiry, netblocks, exemptions, the
 * per-source cap, a full table, and CIDR parsing. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testmain.h"

#include "penalty.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &a->sin_addr), 1);
	}
	return ss;
}

/* An address as a sockaddr; a few in flight at once. */
static const struct sockaddr *SA(const char *text)
{
	static struct sockaddr_storage ring[4];
	static unsigned next;
	struct sockaddr_storage *ss = &ring[next++ % 4];

	*ss = addr(text);
	return (const struct sockaddr *)ss;
}

static const struct penalty_settings defaults = {
	.enabled = true,
	.authfail_ms = 5000,
	.grace_ms = 10000,
	.min_ms = 15000,
	.max_ms = 600000,
	.ipv4_bits = 24,
	.ipv6_bits = 64,
};

static struct penalty_table *table(const struct penalty_settings *s, unsigned max_sources)
{
	struct errbuf err;
	struct penalty_table *t = penalty_create(max_sources, &err);

	assert_non_null(t);
	assert_int_equal(penalty_configure(t, s, &err), 0);
	return t;
}

static enum penalty_verdict admit(struct penalty_table *t, const char *a, uint64_t now)
{
	uint64_t remaining = 0;
	uint32_t ticket;

	return penalty_admit(t, SA(a), now, &remaining, &ticket);
}

static bool failure(struct penalty_table *t, const char *a, enum penalty_event ev, uint64_t now)
{
	uint64_t until;

	return penalty_record(t, SA(a), ev, now, &until);
}

/* Failures add up; refusal starts when the penalty reaches min, not before. */
static void threshold_and_expiry(void **state)
{
	struct penalty_table *t = table(&defaults, 64);
	uint64_t now = 1000000, remaining = 0;
	uint32_t counted;

	(void)state;
	assert_false(failure(t, "192.0.2.7", PENALTY_AUTHFAIL, now)); /* 5 s */
	assert_int_equal(admit(t, "192.0.2.7", now), PENALTY_ALLOW);
	assert_false(failure(t, "192.0.2.7", PENALTY_AUTHFAIL, now)); /* 10 s */
	assert_true(failure(t, "192.0.2.7", PENALTY_AUTHFAIL, now));  /* 15 s: refused */
	assert_int_equal(penalty_admit(t, SA("192.0.2.7"), now, &remaining, &counted),
			 PENALTY_REFUSE_PENALISED);
	assert_int_equal(remaining, 15000);
	assert_int_equal(penalty_active(t, now), 1);
	/* Still refused just before the end, allowed at it. */
	assert_int_equal(admit(t, "192.0.2.7", now + 14999), PENALTY_REFUSE_PENALISED);
	assert_int_equal(admit(t, "192.0.2.7", now + 15000), PENALTY_ALLOW);
	assert_int_equal(penalty_active(t, now + 15000), 0);
	penalty_free(t);
}

/* A penalty served is forgotten; repeat offences while refused lengthen it,
 * never past max. */
static void repeat_offences_capped(void **state)
{
	struct penalty_settings s = defaults;
	struct penalty_table *t;
	uint64_t now = 5000000, until = 0;

	(void)state;
	s.max_ms = 60000;
	t = table(&s, 64);
	for (int i = 0; i < 3; i++)
		failure(t, "198.51.100.1", PENALTY_AUTHFAIL, now);
	for (int i = 0; i < 100; i++)
		penalty_record(t, SA("198.51.100.1"), PENALTY_AUTHFAIL, now + (uint64_t)i, &until);
	assert_int_equal(until, now + 99 + 60000);
	assert_int_equal(admit(t, "198.51.100.1", now + 59000), PENALTY_REFUSE_PENALISED);
	assert_int_equal(admit(t, "198.51.100.1", now + 60100), PENALTY_ALLOW);
	/* After it expired, one failure is just 5 s again: not refused. */
	assert_false(failure(t, "198.51.100.1", PENALTY_AUTHFAIL, now + 70000));
	assert_int_equal(admit(t, "198.51.100.1", now + 70000), PENALTY_ALLOW);
	penalty_free(t);
}

/* The grace-time penalty weighs more than a failed password. */
static void grace_penalty(void **state)
{
	struct penalty_table *t = table(&defaults, 64);
	uint64_t now = 42;

	(void)state;
	assert_false(failure(t, "203.0.113.5", PENALTY_GRACE, now));   /* 10 s */
	assert_true(failure(t, "203.0.113.5", PENALTY_AUTHFAIL, now)); /* 15 s */
	penalty_free(t);
}

/* Sources are netblocks: /24 and /64 by default, configurable. */
static void netblocks(void **state)
{
	struct penalty_settings s = defaults;
	struct penalty_table *t = table(&defaults, 64);
	uint64_t now = 1000;

	(void)state;
	for (int i = 0; i < 3; i++)
		failure(t, "192.0.2.1", PENALTY_AUTHFAIL, now);
	assert_int_equal(admit(t, "192.0.2.200", now), PENALTY_REFUSE_PENALISED);
	assert_int_equal(admit(t, "192.0.3.1", now), PENALTY_ALLOW);
	for (int i = 0; i < 3; i++)
		failure(t, "2001:db8:1:2::1", PENALTY_AUTHFAIL, now);
	assert_int_equal(admit(t, "2001:db8:1:2:ffff::9", now), PENALTY_REFUSE_PENALISED);
	assert_int_equal(admit(t, "2001:db8:1:3::1", now), PENALTY_ALLOW);
	/* IPv4-mapped IPv6 is the IPv4 source. */
	assert_int_equal(admit(t, "::ffff:192.0.2.9", now), PENALTY_REFUSE_PENALISED);
	penalty_free(t);

	s.ipv4_bits = 32;
	t = table(&s, 64);
	for (int i = 0; i < 3; i++)
		failure(t, "127.0.0.1", PENALTY_AUTHFAIL, now);
	assert_int_equal(admit(t, "127.0.0.1", now), PENALTY_REFUSE_PENALISED);
	assert_int_equal(admit(t, "127.0.0.2", now), PENALTY_ALLOW);
	penalty_free(t);
}

static void exempt_and_disabled(void **state)
{
	struct net_cidr ex[2];
	struct penalty_settings s = defaults;
	struct penalty_table *t;
	struct errbuf err;
	uint64_t now = 1000;

	(void)state;
	assert_int_equal(net_parse_cidr("10.0.0.0/8", &ex[0], &err), 0);
	assert_int_equal(net_parse_cidr("2001:db8::/32", &ex[1], &err), 0);
	s.exempt = ex;
	s.n_exempt = 2;
	t = table(&s, 64);
	for (int i = 0; i < 10; i++) {
		assert_false(failure(t, "10.9.8.7", PENALTY_AUTHFAIL, now));
		assert_false(failure(t, "2001:db8:ffff::1", PENALTY_AUTHFAIL, now));
	}
	assert_int_equal(admit(t, "10.9.8.7", now), PENALTY_ALLOW);
	assert_int_equal(admit(t, "2001:db8:ffff::1", now), PENALTY_ALLOW);
	penalty_free(t);

	s = defaults;
	s.enabled = false;
	t = table(&s, 64);
	for (int i = 0; i < 10; i++)
		assert_false(failure(t, "192.0.2.1", PENALTY_AUTHFAIL, now));
	assert_int_equal(admit(t, "192.0.2.1", now), PENALTY_ALLOW);
	penalty_free(t);
}

static void per_source_startups(void **state)
{
	struct penalty_settings s = defaults;
	struct penalty_table *t;
	uint64_t remaining;
	uint32_t counted, counted_first;

	(void)state;
	s.per_source_startups = 2;
	s.ipv4_bits = 32;
	t = table(&s, 64);
	assert_int_equal(penalty_admit(t, SA("192.0.2.1"), 0, &remaining, &counted), PENALTY_ALLOW);
	assert_true(counted != 0);
	counted_first = counted;
	assert_int_equal(admit(t, "192.0.2.1", 0), PENALTY_ALLOW);
	assert_int_equal(penalty_admit(t, SA("192.0.2.1"), 0, &remaining, &counted),
			 PENALTY_REFUSE_STARTUPS);
	assert_int_equal(counted, 0);
	assert_int_equal(admit(t, "192.0.2.2", 0), PENALTY_ALLOW);
	penalty_login_done(t, SA("192.0.2.1"), counted_first);
	assert_int_equal(admit(t, "192.0.2.1", 0), PENALTY_ALLOW);
	/* A new netblock size starts a fresh table: old tickets are void. */
	s.ipv4_bits = 24;
	assert_int_equal(penalty_configure(t, &s, &(struct errbuf){{0}}), 0);
	penalty_login_done(t, SA("192.0.2.1"), counted_first);
	assert_int_equal(admit(t, "192.0.2.1", 0), PENALTY_ALLOW);
	assert_int_equal(admit(t, "192.0.2.1", 0), PENALTY_ALLOW);
	assert_int_equal(admit(t, "192.0.2.1", 0), PENALTY_REFUSE_STARTUPS);
	penalty_free(t);

	/* No cap: nothing counted, nothing to release. */
	t = table(&defaults, 64);
	assert_int_equal(penalty_admit(t, SA("192.0.2.1"), 0, &remaining, &counted), PENALTY_ALLOW);
	assert_int_equal(counted, 0);
	penalty_free(t);
}

/* A full table tracks no new source (never refusing an unknown one), and
 * makes room again as penalties expire. */
static void full_table(void **state)
{
	struct penalty_table *t = table(&defaults, 16);
	char a[32];
	uint64_t now = 1000;

	(void)state;
	for (int i = 0; i < 16; i++) {
		snprintf(a, sizeof(a), "198.51.%d.1", i);
		for (int j = 0; j < 3; j++)
			failure(t, a, PENALTY_AUTHFAIL, now);
	}
	assert_int_equal(penalty_active(t, now), 16);
	for (int j = 0; j < 3; j++)
		assert_false(failure(t, "203.0.113.1", PENALTY_AUTHFAIL, now));
	assert_int_equal(admit(t, "203.0.113.1", now), PENALTY_ALLOW);
	/* A flood of new sources into a full table stays cheap (one sweep a
	 * second at most) and safe. */
	for (int i = 0; i < 1000; i++) {
		snprintf(a, sizeof(a), "10.%d.%d.1", i / 200, i % 200);
		assert_false(failure(t, a, PENALTY_AUTHFAIL, now + (uint64_t)i));
	}
	/* Later, the old entries have expired and give their places. */
	now += 600001;
	for (int j = 0; j < 2; j++)
		failure(t, "203.0.113.1", PENALTY_AUTHFAIL, now);
	assert_true(failure(t, "203.0.113.1", PENALTY_AUTHFAIL, now));
	penalty_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(threshold_and_expiry), cmocka_unit_test(repeat_offences_capped),
		cmocka_unit_test(grace_penalty),        cmocka_unit_test(netblocks),
		cmocka_unit_test(exempt_and_disabled),  cmocka_unit_test(per_source_startups),
		cmocka_unit_test(full_table),
	};

	return test_exit(cmocka_run_group_tests_name("penalty", tests, NULL, NULL));
}
