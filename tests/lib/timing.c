/* timing: answer times of failed logins, side by side (see timing.h). */
#include "timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

#define TIMING_KINDS_MAX 8
#define TIMING_N_MAX     256

static long long timing_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/* One attempt on fd, which waits at a username prompt; -1 on failure. */
static long long timing_answer_us(int fd, const char *attempt, const char *answer)
{
	char buf[4096];
	long long t0 = timing_now_us();

	if (harness_write_all(fd, attempt, strlen(attempt), FIXTURE_TIMEOUT_MS) < 0 ||
	    fixture_expect(fd, answer, buf, sizeof(buf), FIXTURE_TIMEOUT_MS) < 0)
		return -1;
	return timing_now_us() - t0;
}

int timing_medians(int port, const char *const attempts[], size_t kinds, unsigned n,
		   unsigned per_conn, const char *answer, long long medians[])
{
	static long long samples[TIMING_KINDS_MAX][TIMING_N_MAX];
	char buf[4096];
	unsigned done = 0, used = per_conn;
	int fd = -1;

	if (kinds == 0 || kinds > TIMING_KINDS_MAX || n == 0 || n > TIMING_N_MAX ||
	    per_conn < kinds)
		return -1;
	while (done < n) {
		if (used + kinds > per_conn) {
			if (fd >= 0)
				close(fd);
			fd = harness_connect("127.0.0.1", port);
			if (fd < 0 || fixture_expect(fd, "Username: ", buf, sizeof(buf),
						     FIXTURE_TIMEOUT_MS) < 0)
				goto fail;
			/* The first answer of a connection warms what it touches. */
			if (timing_answer_us(fd, attempts[0], answer) < 0)
				goto fail;
			used = 1;
		}
		/* The kinds take turns starting the round. */
		for (size_t i = 0; i < kinds; i++) {
			size_t k = (i + done) % kinds;

			samples[k][done] = timing_answer_us(fd, attempts[k], answer);
			if (samples[k][done] < 0)
				goto fail;
		}
		used += (unsigned)kinds;
		done++;
	}
	close(fd);
	for (size_t k = 0; k < kinds; k++) {
		qsort(samples[k], n, sizeof(samples[k][0]), cmp_ll);
		medians[k] = samples[k][n / 2];
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

bool timing_alike(const long long medians[], const char *const names[], size_t kinds,
		  double tolerance)
{
	long long lo = medians[0], hi = medians[0];

	for (size_t k = 0; k < kinds; k++) {
		printf("median answer, %s: %lld us\n", names[k], medians[k]);
		lo = medians[k] < lo ? medians[k] : lo;
		hi = medians[k] > hi ? medians[k] : hi;
	}
	return (double)(hi - lo) <= tolerance * (double)hi;
}
