/* loop: epoll, a binary heap of timers, an eventfd-woken task stack (see loop.h). */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

struct loop {
	int epfd;
	int wakefd;
	struct loop_io wake_io;
	bool stopping; /* atomic */
	uint64_t now_ms;

	struct loop_timer **heap;
	size_t heap_len, heap_cap;

	struct loop_task *posted; /* atomic push-only stack, drained all at once */
	struct loop_task *deferred, **deferred_tail;
};

uint64_t loop_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_now_ms(const struct loop *loop)
{
	return loop->now_ms;
}

static void loop_run_posted(struct loop *loop)
{
	struct loop_task *list = __atomic_exchange_n(&loop->posted, NULL, __ATOMIC_ACQUIRE);
	struct loop_task *fifo = NULL;

	/* The stack holds the newest first: reverse it to run tasks in order. */
	while (list != NULL) {
		struct loop_task *next = list->next;

		list->next = fifo;
		fifo = list;
		list = next;
	}
	while (fifo != NULL) {
		struct loop_task *t = fifo;

		fifo = t->next;
		t->next = NULL;
		t->fn(t);
	}
}

static void loop_wake_cb(struct loop_io *io, uint32_t events)
{
	struct loop *loop = io->arg;
	uint64_t v;

	(void)events;
	while (read(loop->wakefd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	loop_run_posted(loop);
}

struct loop *loop_create(struct errbuf *err)
{
	struct loop *loop = calloc(1, sizeof(*loop));

	if (loop == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	loop->wakefd = -1;
	loop->deferred_tail = &loop->deferred;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		errbuf_errno(err, errno, "epoll_create1");
		goto fail;
	}
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wakefd < 0) {
		errbuf_errno(err, errno, "eventfd");
		goto fail;
	}
	loop->wake_io.fd = -1;
	if (loop_io_add(loop, &loop->wake_io, loop->wakefd, EPOLLIN, loop_wake_cb, loop) < 0) {
		errbuf_errno(err, errno, "epoll_ctl");
		goto fail;
	}
	loop->now_ms = loop_clock_ms();
	return loop;
fail:
	loop_free(loop);
	return NULL;
}

void loop_free(struct loop *loop)
{
	if (loop == NULL)
		return;
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	free(loop->heap);
	free(loop);
}

void loop_stop(struct loop *loop)
{
	uint64_t one = 1;

	__atomic_store_n(&loop->stopping, true, __ATOMIC_RELEASE);
	(void)!write(loop->wakefd, &one, sizeof(one));
}

int loop_io_add(struct loop *loop, struct loop_io *io, int fd, uint32_t events, loop_io_fn *fn,
		void *arg)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -1;
	io->fd = fd;
	io->fn = fn;
	io->arg = arg;
	return 0;
}

int loop_io_mod(struct loop *loop, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

void loop_io_del(struct loop *loop, struct loop_io *io)
{
	if (io->fd < 0)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->fd = -1;
}

/* Timer heap: slot is index + 1, so a zeroed timer reads as disarmed. */
static void heap_place(struct loop *loop, size_t i, struct loop_timer *t)
{
	loop->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(struct loop *loop, size_t i)
{
	struct loop_timer *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (loop->heap[parent]->deadline_ms <= t->deadline_ms)
			break;
		heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_place(loop, i, t);
}

static void heap_down(struct loop *loop, size_t i)
{
	struct loop_timer *t = loop->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= loop->heap_len)
			break;
		if (c + 1 < loop->heap_len &&
		    loop->heap[c + 1]->deadline_ms < loop->heap[c]->deadline_ms)
			c++;
		if (t->deadline_ms <= loop->heap[c]->deadline_ms)
			break;
		heap_place(loop, i, loop->heap[c]);
		i = c;
	}
	heap_place(loop, i, t);
}

void loop_timer_disarm(struct loop *loop, struct loop_timer *t)
{
	size_t i;
	struct loop_timer *last;

	if (t->slot == 0)
		return;
	i = t->slot - 1;
	t->slot = 0;
	last = loop->heap[--loop->heap_len];
	if (i == loop->heap_len)
		return;
	loop->heap[i] = last;
	last->slot = i + 1;
	heap_up(loop, i);
	heap_down(loop, last->slot - 1);
}

int loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t delay_ms, loop_timer_fn *fn,
		   void *arg)
{
	loop_timer_disarm(loop, t);
	if (loop->heap_len == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct loop_timer **h = realloc(loop->heap, cap * sizeof(*h));

		if (h == NULL)
			return -1;
		loop->heap = h;
		loop->heap_cap = cap;
	}
	t->deadline_ms = loop->now_ms + delay_ms;
	t->fn = fn;
	t->arg = arg;
	loop->heap[loop->heap_len] = t;
	t->slot = ++loop->heap_len;
	heap_up(loop, loop->heap_len - 1);
	return 0;
}

static void loop_run_timers(struct loop *loop)
{
	while (loop->heap_len > 0 && loop->heap[0]->deadline_ms <= loop->now_ms) {
		struct loop_timer *t = loop->heap[0];

		loop_timer_disarm(loop, t);
		t->fn(t);
	}
}

void loop_post(struct loop *loop, struct loop_task *task, loop_task_fn *fn, void *arg)
{
	struct loop_task *head;
	uint64_t one = 1;

	task->fn = fn;
	task->arg = arg;
	head = __atomic_load_n(&loop->posted, __ATOMIC_RELAXED);
	do {
		task->next = head;
	} while (!__atomic_compare_exchange_n(&loop->posted, &head, task, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	/* Only the post that found the stack empty needs to wake the loop. */
	if (head == NULL)
		(void)!write(loop->wakefd, &one, sizeof(one));
}

void loop_defer(struct loop *loop, struct loop_task *task, loop_task_fn *fn, void *arg)
{
	task->fn = fn;
	task->arg = arg;
	task->next = NULL;
	*loop->deferred_tail = task;
	loop->deferred_tail = &task->next;
}

static void loop_run_deferred(struct loop *loop)
{
	struct loop_task *list = loop->deferred;

	/* Tasks deferred while these run wait for the next round. */
	loop->deferred = NULL;
	loop->deferred_tail = &loop->deferred;
	while (list != NULL) {
		struct loop_task *t = list;

		list = t->next;
		t->next = NULL;
		t->fn(t);
	}
}

static int loop_timeout(const struct loop *loop)
{
	uint64_t d;

	if (loop->deferred != NULL)
		return 0;
	if (loop->heap_len == 0)
		return -1;
	d = loop->heap[0]->deadline_ms;
	if (d <= loop->now_ms)
		return 0;
	d -= loop->now_ms;
	return d > 60000 ? 60000 : (int)d;
}

int loop_run(struct loop *loop)
{
	struct epoll_event evs[LOOP_BATCH];

	while (!__atomic_load_n(&loop->stopping, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(loop->epfd, evs, LOOP_BATCH, loop_timeout(loop));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		loop->now_ms = loop_clock_ms();
		for (int i = 0; i < n; i++) {
			struct loop_io *io = evs[i].data.ptr;

			if (io->fd >= 0)
				io->fn(io, evs[i].events);
		}
		loop_run_timers(loop);
		loop_run_deferred(loop);
	}
	/* Posted tasks may hold resources (a handed-over connection): run them so
	 * their owners can release what they carry. */
	loop_run_posted(loop);
	loop_run_deferred(loop);
	return 0;
}
