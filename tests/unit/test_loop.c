/* test_loop: the event loop's promises (loop.h), on real descriptors and real
 * threads: timers fire in deadline order and can be re-armed or disarmed from
 * their callbacks; tasks posted from other threads run on the loop's thread in
 * the order posted; deferred work runs after the batch, and work deferred by it
 * waits for the next round; an event of the batch for an io removed earlier in
 * the same batch is never delivered (the rule deferred frees rely on). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "loop.h"

static struct loop *new_loop(void)
{
	struct errbuf err;
	struct loop *loop = loop_create(&err);

	assert_non_null(loop);
	return loop;
}

/* ---- timers -------------------------------------------------------------- */

struct trace {
	struct loop *loop;
	char order[32];
	size_t n;
};

struct mark {
	struct loop_timer t;
	struct trace *trace;
	char name;
	bool stop; /* stop the loop once this fired */
};

static void mark_fired(struct loop_timer *t)
{
	struct mark *m = t->arg;

	m->trace->order[m->trace->n++] = m->name;
	if (m->stop)
		loop_stop(m->trace->loop);
}

static void timers_fire_in_deadline_order(void **state)
{
	struct trace tr = {.loop = new_loop()};
	struct mark a = {.trace = &tr, .name = 'a'}, b = {.trace = &tr, .name = 'b'},
		    c = {.trace = &tr, .name = 'c', .stop = true},
		    gone = {.trace = &tr, .name = 'x'};

	(void)state;
	/* Armed out of order; one re-armed later, one disarmed. */
	assert_int_equal(loop_timer_arm(tr.loop, &c.t, 30, mark_fired, &c), 0);
	assert_int_equal(loop_timer_arm(tr.loop, &a.t, 10, mark_fired, &a), 0);
	assert_int_equal(loop_timer_arm(tr.loop, &b.t, 1, mark_fired, &b), 0);
	assert_int_equal(loop_timer_arm(tr.loop, &gone.t, 5, mark_fired, &gone), 0);
	assert_int_equal(loop_timer_arm(tr.loop, &b.t, 20, mark_fired, &b), 0);
	loop_timer_disarm(tr.loop, &gone.t);
	assert_false(loop_timer_armed(&gone.t));
	assert_int_equal(loop_run(tr.loop), 0);
	assert_int_equal(tr.n, 3);
	assert_memory_equal(tr.order, "abc", 3);
	assert_false(loop_timer_armed(&a.t));
	loop_free(tr.loop);
}

struct rearm {
	struct loop_timer t;
	struct loop *loop;
	unsigned fired;
	uint64_t first_ms, last_ms;
};

static void rearm_fired(struct loop_timer *t)
{
	struct rearm *r = t->arg;

	if (r->fired++ == 0)
		r->first_ms = loop_now_ms(r->loop);
	r->last_ms = loop_now_ms(r->loop);
	if (r->fired < 5)
		assert_int_equal(loop_timer_arm(r->loop, t, 2, rearm_fired, r), 0);
	else
		loop_stop(r->loop);
}

/* A timer re-armed from its own callback fires again, later, not in the same
 * round over and over. */
static void a_timer_rearms_itself(void **state)
{
	struct rearm r = {.loop = new_loop()};

	(void)state;
	assert_int_equal(loop_timer_arm(r.loop, &r.t, 0, rearm_fired, &r), 0);
	assert_int_equal(loop_run(r.loop), 0);
	assert_int_equal(r.fired, 5);
	assert_true(r.last_ms >= r.first_ms + 8);
	loop_free(r.loop);
}

/* ---- posted tasks -------------------------------------------------------- */

struct posts {
	struct loop *loop;
	struct loop_task tasks[100];
	int seen[100];
	int n;
	pthread_t loop_thread, ran_on[100];
};

static void post_ran(struct loop_task *t)
{
	struct posts *p = t->arg;
	int i = (int)(t - p->tasks);

	p->ran_on[p->n] = pthread_self();
	p->seen[p->n++] = i;
	if (p->n == 100)
		loop_stop(p->loop);
}

static void *poster(void *arg)
{
	struct posts *p = arg;

	for (int i = 0; i < 100; i++)
		loop_post(p->loop, &p->tasks[i], post_ran, p);
	return NULL;
}

static void *runner(void *arg)
{
	struct posts *p = arg;

	p->loop_thread = pthread_self();
	assert_int_equal(loop_run(p->loop), 0);
	return NULL;
}

static void posts_run_on_the_loop_in_order(void **state)
{
	struct posts *p = calloc(1, sizeof(*p));
	pthread_t run, post;

	(void)state;
	assert_non_null(p);
	p->loop = new_loop();
	assert_int_equal(pthread_create(&run, NULL, runner, p), 0);
	assert_int_equal(pthread_create(&post, NULL, poster, p), 0);
	pthread_join(post, NULL);
	pthread_join(run, NULL);
	assert_int_equal(p->n, 100);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(p->seen[i], i);
		assert_true(pthread_equal(p->ran_on[i], p->loop_thread));
	}
	loop_free(p->loop);
	free(p);
}

/* ---- deferred work and stale events -------------------------------------- */

struct batch {
	struct loop *loop;
	struct loop_io a, b;
	int pa[2], pb[2];
	unsigned a_events, b_events;
	struct loop_task deferred, deferred_again;
	unsigned deferred_runs, deferred_again_runs;
	unsigned events_when_deferred_ran;
	bool again_ran_in_first_round;
};

static void deferred_again_ran(struct loop_task *t)
{
	struct batch *b = t->arg;

	b->deferred_again_runs++;
	loop_stop(b->loop);
}

static void deferred_ran(struct loop_task *t)
{
	struct batch *b = t->arg;

	b->deferred_runs++;
	b->events_when_deferred_ran = b->a_events + b->b_events;
	/* Deferred while the deferred work runs: the next round, not this one. */
	loop_defer(b->loop, &b->deferred_again, deferred_again_ran, b);
	b->again_ran_in_first_round = b->deferred_again_runs != 0;
}

/* Whichever of the two ready descriptors is handled first removes both (as a
 * session closing its two sockets would) and defers work. */
static void batch_event(struct loop_io *io, uint32_t events)
{
	struct batch *b = io->arg;

	(void)events;
	if (io == &b->a)
		b->a_events++;
	else
		b->b_events++;
	loop_io_del(b->loop, &b->a);
	loop_io_del(b->loop, &b->b);
	loop_defer(b->loop, &b->deferred, deferred_ran, b);
}

static void a_removed_io_gets_no_stale_event(void **state)
{
	struct batch b = {.loop = new_loop()};

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b.pa), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b.pb), 0);
	assert_int_equal(loop_io_add(b.loop, &b.a, b.pa[0], EPOLLIN, batch_event, &b), 0);
	assert_int_equal(loop_io_add(b.loop, &b.b, b.pb[0], EPOLLIN, batch_event, &b), 0);
	/* Both readable before the loop looks: one batch holds both events. */
	assert_int_equal(write(b.pa[1], "x", 1), 1);
	assert_int_equal(write(b.pb[1], "x", 1), 1);
	assert_int_equal(loop_run(b.loop), 0);
	assert_int_equal(b.a_events + b.b_events, 1);
	assert_int_equal(b.deferred_runs, 1);
	assert_int_equal(b.events_when_deferred_ran, 1);
	assert_false(b.again_ran_in_first_round);
	assert_int_equal(b.deferred_again_runs, 1);
	/* Removing again, or what was never added, is safe. */
	loop_io_del(b.loop, &b.a);
	loop_io_del(b.loop, &b.b);
	for (int i = 0; i < 2; i++) {
		close(b.pa[i]);
		close(b.pb[i]);
	}
	loop_free(b.loop);
}

/* loop_now_ms() is the batch's time: cheap, and the same for every handler of
 * the batch; loop_clock_ms() is now. */
static void now_is_cached_per_batch(void **state)
{
	struct loop *loop = new_loop();
	uint64_t cached = loop_now_ms(loop), t0 = loop_clock_ms();

	(void)state;
	while (loop_clock_ms() < t0 + 3)
		;
	assert_int_equal(loop_now_ms(loop), cached);
	assert_true(loop_clock_ms() >= cached + 3);
	loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(timers_fire_in_deadline_order),
		cmocka_unit_test(a_timer_rearms_itself),
		cmocka_unit_test(posts_run_on_the_loop_in_order),
		cmocka_unit_test(a_removed_io_gets_no_stale_event),
		cmocka_unit_test(now_is_cached_per_batch),
	};

	return test_exit(cmocka_run_group_tests_name("loop", tests, NULL, NULL));
}
