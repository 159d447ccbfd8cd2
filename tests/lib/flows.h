/* flows: many clients' traffic at once, for the integration and scale tests. A flow sends a
 * test stream up a connected socket, half-closes, and collects what comes back until EOF; it
 * can be paced, or reset (RST) at a chosen byte. flows_pump() moves every flow's bytes with
 * one poll() loop. The test streams are made by position (flows_pattern()), so any slice can
 * be made or checked on its own. No cmocka: callers assert on what the flows report. */
#ifndef SOCKGATE_FLOWS_H
#define SOCKGATE_FLOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOW_NEVER SIZE_MAX

/* One client's traffic: out goes up, then a half-close; what comes back lands in in. */
struct flow {
	int fd;
	const unsigned char *out;
	size_t out_len, sent;
	size_t allow; /* send no further than this yet (pacing); FLOW_NEVER by default */
	unsigned char *in;
	size_t in_cap, got;
	size_t reset_at; /* once sent + got reach this, reset the connection; FLOW_NEVER */
	bool shut, ended, reset;
	int error; /* what ended it: 0 for EOF, else an errno (EOVERFLOW: more than in_cap) */
};

/* Calls fn(arg, i) for i = 0..count-1, every period_ms, while flows_pump() runs: load that
 * goes on while something else happens. */
struct pacer {
	int period_ms;
	int count;
	void (*fn)(void *arg, int i);
	void *arg;
};

void flow_init(struct flow *f, int fd, const unsigned char *out, size_t out_len, unsigned char *in,
	       size_t in_cap);

/* Moves the flows' bytes, all at once, until each has ended or paused (sent all it may, got
 * all of it back) and the pacer (may be NULL) has run out. Returns 0, or -1 on timeout. */
int flows_pump(struct flow *fl, size_t n, const struct pacer *pc, int timeout_ms);

/* The first flow, not reset by its client, that did not get its bytes back exactly and then
 * EOF; -1 if there is none. */
long flows_first_bad_echo(const struct flow *fl, size_t n);

/* Closes fd with a reset (RST) instead of a FIN. */
void flows_reset_close(int fd);

/* The bytes at off.. of test stream seed. */
void flows_pattern(uint64_t seed, uint64_t off, unsigned char *buf, size_t len);
/* A splitmix64 step: the tests' random choices, replayable from a seed. */
uint64_t flows_rng_next(uint64_t *state);

/* Milliseconds on CLOCK_MONOTONIC, and what is left until deadline (0 if past). */
long long flows_now_ms(void);
int flows_ms_until(long long deadline);

#endif
