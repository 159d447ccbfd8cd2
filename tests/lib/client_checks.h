/* client_checks: what an integration test does as a client of the daemon, as
 * cmocka assertions: send text, expect text, read to the end. Header-only
 * because it asserts (the harness library itself does not link cmocka).
 * Include after <cmocka.h>. */
#ifndef SOCKGATE_CLIENT_CHECKS_H
#define SOCKGATE_CLIENT_CHECKS_H

#include <string.h>
#include <sys/types.h>

#include "fixture.h"

/* Sends all of s, or fails the test. */
static inline void send_str(int fd, const char *s)
{
	assert_int_equal(harness_write_all(fd, s, strlen(s), FIXTURE_TIMEOUT_MS), 0);
}

/* Reads until the received text contains s, or fails the test saying what came. */
static inline void expect_str(int fd, const char *s)
{
	char buf[16384];

	if (fixture_expect(fd, s, buf, sizeof(buf), FIXTURE_TIMEOUT_MS) < 0)
		fail_msg("expected \"%s\", got \"%s\"", s, buf);
}

/* Reads until EOF and returns what came (a static buffer); fails on timeout. */
static inline const char *read_to_eof(int fd)
{
	static char buf[65536];
	ssize_t n = harness_read_all(fd, buf, sizeof(buf) - 1, FIXTURE_TIMEOUT_MS);

	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

#endif
