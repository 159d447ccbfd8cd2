/* client_checks: what an integration test does as a client of the daemon, as
 * cmocka assertions: send text, expect text, read to the end. Header-only
 * because it asserts (the harness library itself does not link cmocka).
 * Include after <cmocka.h>. */
#ifndef SOCKGATE_CLIENT_CHECKS_H
#define SOCKGATE_CLIENT_CHECKS_H

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

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

/* A free loopback port: bound, read and closed, for a program that binds it
 * next (HAProxy, a fixed listen address that a reload must match). */
static inline int free_port(void)
{
	int port, fd = harness_listen("127.0.0.1", &port);

	assert_true(fd >= 0);
	close(fd);
	return port;
}

/* A connection to 127.0.0.1:port from the loopback address src (another "host"), or the test
 * fails. */
static inline int connect_from(const char *src, int port)
{
	int fd = harness_connect_from(src, "127.0.0.1", port);

	assert_true(fd >= 0);
	return fd;
}

/* cmocka setup: a struct fixture in *state, with fixture_setup()'s daemon running. */
static inline int fixture_test_setup(void **state, const char *const users[],
				     const char *const upstream_args[], const char *top,
				     const char *extra)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	assert_int_equal(fixture_setup(f, users, upstream_args, top, extra), 0);
	return 0;
}

/* cmocka teardown of fixture_test_setup(): fixture_finish() must find everything clean (secret
 * never logged, clean exits). */
static inline int fixture_test_teardown(void **state, const char *secret)
{
	struct fixture *f = *state;
	int rc = fixture_finish(f, secret);

	free(f);
	assert_int_equal(rc, 0);
	return 0;
}

#endif
