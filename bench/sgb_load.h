/* sgb_load: the ping-pong engine that the pingpong and storm modes share.
 * Threads bounce messages on already open sessions until stopped; each round
 * trip's time goes to the samples of the phase in force when it ended, so a
 * controller can mark warm-up, baseline and load periods from outside. */
#ifndef SOCKGATE_SGB_LOAD_H
#define SOCKGATE_SGB_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sgb.h"

/* Phases that are recorded; any value at or above this is not. */
#define SGB_PP_PHASES 4

struct sgb_pp;

struct sgb_pp_thread {
	struct sgb_pp *pp;
	int *fds;
	unsigned n;
	unsigned first_id; /* pattern id of fds[0] */
	int ep;
	uint8_t *buf;
	struct sgb_lat lat[SGB_PP_PHASES];
	uint64_t count[SGB_PP_PHASES];
	unsigned errors;
	char err[256];
};

struct sgb_pp {
	unsigned size; /* message bytes */
	bool verify;
	uint64_t interval_ns; /* 0: closed loop; else each connection sends at this pace */
	atomic_uint phase;
	atomic_bool stop;
	unsigned nthreads;
	struct sgb_pp_thread *th;
	pthread_t *tids;
};

/* Sends the echo header on every session. Returns 0 or -1. */
int sgb_pp_send_headers(int *fds, unsigned n);
/* Starts nthreads threads over fds[0..n), which they close when stopped. */
int sgb_pp_start(struct sgb_pp *p, int *fds, unsigned n, unsigned nthreads);
void sgb_pp_stop(struct sgb_pp *p);
/* Adds phase's samples to out; count gets the round trips, errors (may be
 * NULL) the failures, with the first described in err. */
void sgb_pp_collect(struct sgb_pp *p, unsigned phase, struct sgb_lat *out, uint64_t *count,
		    unsigned *errors, char *err, size_t errlen);
void sgb_pp_free(struct sgb_pp *p);

void sgb_sleep_s(double s);

#endif
