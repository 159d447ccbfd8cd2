/* loop: one epoll event loop per thread, with timers, tasks posted from other
 * threads, and work deferred to the end of the current batch. Objects embed
 * struct loop_io / loop_timer / loop_task, so the loop allocates nothing per
 * event. Edge-triggered by default: a handler reads or writes until EAGAIN. */
#ifndef SOCKGATE_LOOP_H
#define SOCKGATE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "errbuf.h"

struct loop;
struct loop_io;
struct loop_timer;
struct loop_task;

typedef void loop_io_fn(struct loop_io *io, uint32_t events);
typedef void loop_timer_fn(struct loop_timer *t);
typedef void loop_task_fn(struct loop_task *task);

struct loop_io {
	int fd; /* -1 once removed: stale events of the same batch are skipped */
	loop_io_fn *fn;
	void *arg;
};

struct loop_timer {
	uint64_t deadline_ms;
	size_t slot; /* heap index + 1; 0 = not armed */
	loop_timer_fn *fn;
	void *arg;
};

struct loop_task {
	struct loop_task *next;
	loop_task_fn *fn;
	void *arg;
};

struct loop *loop_create(struct errbuf *err);
void loop_free(struct loop *loop);

/* Runs until loop_stop(); returns 0, or -1 if epoll failed. */
int loop_run(struct loop *loop);
/* Thread-safe: makes loop_run return after the current batch. */
void loop_stop(struct loop *loop);

/* Registers fd with events (EPOLLIN, EPOLLOUT, EPOLLET, ...). On failure errno
 * is set and io is untouched. */
int loop_io_add(struct loop *loop, struct loop_io *io, int fd, uint32_t events, loop_io_fn *fn,
		void *arg);
int loop_io_mod(struct loop *loop, struct loop_io *io, uint32_t events);
/* Unregisters (the caller still owns and closes fd); marks io dead for the rest
 * of the batch. Safe on an io that was never added (fd == -1). */
void loop_io_del(struct loop *loop, struct loop_io *io);

/* Arms (or re-arms) t to fire once, delay_ms from the loop's clock. */
int loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t delay_ms, loop_timer_fn *fn,
		   void *arg);
void loop_timer_disarm(struct loop *loop, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
	return t->slot != 0;
}

/* Thread-safe: runs task->fn(task) on loop's thread, soon. The task must stay
 * valid until then. Never fails. */
void loop_post(struct loop *loop, struct loop_task *task, loop_task_fn *fn, void *arg);

/* Same thread only: runs task after the current batch of events. This is how
 * objects are freed safely (a later event of the batch may still name them) and
 * how a busy handler yields to others. */
void loop_defer(struct loop *loop, struct loop_task *task, loop_task_fn *fn, void *arg);

/* Milliseconds on CLOCK_MONOTONIC, cached per batch. */
uint64_t loop_now_ms(const struct loop *loop);
/* CLOCK_MONOTONIC now, in milliseconds (no cache). */
uint64_t loop_clock_ms(void);

#endif
