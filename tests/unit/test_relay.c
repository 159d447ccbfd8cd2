/* test_relay: the byte pump against a scripted transport (transport.h), so every
 * case is exact: partial writes, EAGAIN on either side, the end of the stream
 * and the half-close it becomes, errors, the budget per wakeup, and the short
 * read that spares a recv() (or not, when a hang-up was reported). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testmain.h"

#include "harness.h"

#include "relay.h"
#include "transport.h"

/* One side as the pump sees it: a source of bytes or a sink with room. */
struct fake {
	const unsigned char *data; /* what it will give */
	size_t len, pos;
	size_t chunk;   /* the most one recv gives (0: all it has) */
	bool eof;       /* at the end of data: 0, not EAGAIN */
	int recv_error; /* an errno for the next recv (0: none) */
	unsigned recvs; /* calls */

	unsigned char *got; /* what it took */
	size_t got_len, got_cap;
	size_t room;    /* what it takes before EAGAIN */
	int send_error; /* an errno for the next send */
	unsigned sends;
	unsigned shutdowns;
};

static struct fake *fake_of(struct transport *t)
{
	return t->state;
}

static ssize_t fake_recv(struct transport *t, void *buf, size_t len)
{
	struct fake *f = fake_of(t);
	size_t n = f->len - f->pos;

	f->recvs++;
	if (f->recv_error != 0) {
		errno = f->recv_error;
		return -1;
	}
	if (n == 0) {
		if (f->eof)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	if (f->chunk != 0 && n > f->chunk)
		n = f->chunk;
	if (n > len)
		n = len;
	memcpy(buf, f->data + f->pos, n);
	f->pos += n;
	return (ssize_t)n;
}

static ssize_t fake_send(struct transport *t, const void *buf, size_t len)
{
	struct fake *f = fake_of(t);
	size_t n = len < f->room ? len : f->room;

	f->sends++;
	if (f->send_error != 0) {
		errno = f->send_error;
		return -1;
	}
	if (n == 0) {
		errno = EAGAIN;
		return -1;
	}
	assert_true(f->got_len + n <= f->got_cap);
	memcpy(f->got + f->got_len, buf, n);
	f->got_len += n;
	f->room -= n;
	return (ssize_t)n;
}

static int fake_shutdown(struct transport *t)
{
	fake_of(t)->shutdowns++;
	return 0;
}

static void fake_close(struct transport *t)
{
	(void)t;
}

static const struct transport_ops fake_ops = {
	.name = "fake",
	.recv = fake_recv,
	.send = fake_send,
	.shutdown = fake_shutdown,
	.close = fake_close,
};

struct rig {
	struct fake src, dst;
	struct transport s, d;
	struct relay_dir dir;
	bool readable, writable;
	unsigned char *data;
	char scratch[4096];
};

/* A source of len pattern bytes and a sink with room for cap (room unlimited). */
static struct rig *rig_new(size_t len, size_t cap)
{
	struct rig *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->data = malloc(len + 1);
	r->dst.got = malloc(cap + 1);
	assert_true(r->data != NULL && r->dst.got != NULL);
	for (size_t i = 0; i < len; i++)
		r->data[i] = (unsigned char)(i * 7 + 3);
	r->src.data = r->data;
	r->src.len = len;
	r->dst.got_cap = cap;
	r->dst.room = SIZE_MAX;
	r->s = (struct transport){.ops = &fake_ops, .fd = 3, .state = &r->src};
	r->d = (struct transport){.ops = &fake_ops, .fd = 4, .state = &r->dst};
	r->readable = r->writable = true;
	return r;
}

static void rig_free(struct rig *r)
{
	relay_dir_release(&r->dir);
	free(r->data);
	free(r->dst.got);
	free(r);
}

static enum relay_status pump(struct rig *r, bool drain, size_t budget)
{
	return relay_pump(&r->dir, &r->s, &r->readable, drain, &r->d, &r->writable, r->scratch,
			  sizeof(r->scratch), budget);
}

/* Everything moves while both sides are ready; a short read ends the round
 * without the recv() that would only say EAGAIN. */
static void moves_all_and_skips_the_last_recv(void **state)
{
	struct rig *r = rig_new(10000, 10000);

	(void)state;
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_BLOCKED);
	assert_int_equal(r->dst.got_len, 10000);
	assert_memory_equal(r->dst.got, r->data, 10000);
	assert_int_equal(r->dir.bytes, 10000);
	assert_false(r->readable);
	/* 4096 + 4096 + 1808: the short third read proved the socket empty. */
	assert_int_equal(r->src.recvs, 3);
	assert_null(r->dir.buf);
	rig_free(r);
}

/* After a hang-up was reported, a short read proves nothing (the EOF behind the
 * data brings no further edge): the source is read until it says so. */
static void a_reported_hangup_is_read_to_the_end(void **state)
{
	struct rig *r = rig_new(100, 100);

	(void)state;
	r->src.eof = true;
	assert_int_equal(pump(r, true, SIZE_MAX), RELAY_FINISHED);
	assert_int_equal(r->src.recvs, 2);
	assert_true(r->dir.eof);
	assert_int_equal(r->dst.shutdowns, 1);
	assert_true(r->dir.shut);
	rig_free(r);
}

/* The destination takes part of a chunk: the rest is kept (exactly that much),
 * nothing more is read, and it goes first once the destination has room. */
static void a_partial_write_is_kept_and_flushed_first(void **state)
{
	struct rig *r = rig_new(1000, 1000);

	(void)state;
	r->src.chunk = 300;
	r->dst.room = 100;
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_BLOCKED);
	assert_false(r->writable);
	assert_int_equal(r->dir.len, 200);
	assert_int_equal(r->src.pos, 300); /* backpressure: no second read */
	/* Still full: nothing happens, nothing is read. */
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_BLOCKED);
	assert_int_equal(r->src.pos, 300);
	/* Room again, and the rest of the input arrives (a new edge). */
	r->dst.room = SIZE_MAX;
	r->writable = true;
	r->src.chunk = 0;
	r->readable = true;
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_BLOCKED);
	assert_int_equal(r->dst.got_len, 1000);
	assert_memory_equal(r->dst.got, r->data, 1000);
	assert_null(r->dir.buf);
	rig_free(r);
}

/* EAGAIN on the destination at once: the whole chunk is kept. */
static void eagain_on_the_destination(void **state)
{
	struct rig *r = rig_new(500, 500);

	(void)state;
	r->dst.room = 0;
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_BLOCKED);
	assert_int_equal(r->dir.len, 500);
	assert_false(r->writable);
	r->dst.room = SIZE_MAX;
	r->writable = true;
	assert_int_equal(relay_flush(&r->dir, &r->d, &r->writable), 0);
	assert_memory_equal(r->dst.got, r->data, 500);
	rig_free(r);
}

/* EAGAIN on the source: it is no longer readable, and nothing is lost. */
static void eagain_on_the_source(void **state)
{
	struct rig *r = rig_new(0, 10);

	(void)state;
	assert_int_equal(pump(r, true, SIZE_MAX), RELAY_BLOCKED);
	assert_false(r->readable);
	assert_int_equal(r->dst.sends, 0);
	rig_free(r);
}

/* The end of the stream becomes a half-close of the destination, but only once
 * what is pending was written; then the direction is finished. */
static void end_of_stream_half_closes_after_the_pending_bytes(void **state)
{
	struct rig *r = rig_new(300, 300);

	(void)state;
	r->src.eof = true;
	r->dst.room = 100;
	assert_int_equal(pump(r, true, SIZE_MAX), RELAY_BLOCKED);
	assert_int_equal(r->dst.shutdowns, 0);
	r->dst.room = SIZE_MAX;
	r->writable = true;
	assert_int_equal(pump(r, true, SIZE_MAX), RELAY_FINISHED);
	assert_int_equal(r->dst.shutdowns, 1);
	assert_int_equal(r->dst.got_len, 300);
	/* Finished stays finished, and shuts down once. */
	assert_int_equal(pump(r, true, SIZE_MAX), RELAY_FINISHED);
	assert_int_equal(r->dst.shutdowns, 1);
	rig_free(r);
}

/* Errors say which side failed, with errno. */
static void errors_name_their_side(void **state)
{
	struct rig *r = rig_new(100, 100);

	(void)state;
	r->src.recv_error = ECONNRESET;
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_SRC_ERROR);
	assert_int_equal(errno, ECONNRESET);
	rig_free(r);

	r = rig_new(100, 100);
	r->dst.send_error = EPIPE;
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_DST_ERROR);
	assert_int_equal(errno, EPIPE);
	rig_free(r);
}

/* One wakeup moves about the budget, then yields with more to do; the next
 * one goes on where it stopped. */
static void the_budget_yields(void **state)
{
	struct rig *r = rig_new(100000, 100000);
	size_t first;

	(void)state;
	assert_int_equal(pump(r, false, 10000), RELAY_YIELD);
	first = r->dst.got_len;
	assert_true(first >= 10000 && first < 10000 + sizeof(r->scratch));
	assert_true(r->readable);
	while (pump(r, false, 10000) == RELAY_YIELD)
		;
	assert_int_equal(r->dst.got_len, 100000);
	assert_memory_equal(r->dst.got, r->data, 100000);
	rig_free(r);
}

/* Queued text (prompts) goes before relayed bytes, and is counted apart. */
static void queued_text_goes_first(void **state)
{
	struct rig *r = rig_new(5, 100);

	(void)state;
	assert_int_equal(relay_queue(&r->dir, "ab", 2), 0);
	assert_int_equal(relay_queue(&r->dir, "cd", 2), 0);
	assert_int_equal(pump(r, false, SIZE_MAX), RELAY_BLOCKED);
	assert_int_equal(r->dst.got_len, 9);
	assert_memory_equal(r->dst.got, "abcd", 4);
	assert_memory_equal(r->dst.got + 4, r->data, 5);
	assert_int_equal(r->dir.bytes, 5);
	rig_free(r);
}

/* A loopback TCP connection: *near for the test, *far for the relay (non-blocking). */
static void tcp_pair(int *near, int *far)
{
	int port, lfd = harness_listen("127.0.0.1", &port);

	assert_true(lfd >= 0);
	*near = harness_connect("127.0.0.1", port);
	assert_true(*near >= 0);
	*far = harness_accept(lfd, 5000);
	assert_true(*far >= 0);
	close(lfd);
	assert_int_equal(fcntl(*far, F_SETFL, O_NONBLOCK), 0);
}

/* The splice path (kTLS directions) on real sockets: 4 MiB through a pipe into a
 * destination that takes little at a time; what it does not take comes back out
 * of the pipe, which is empty after every call; the end becomes a half-close. */
static void splice_moves_bytes_exactly_and_leaves_the_pipe_empty(void **state)
{
	enum { N = 4 << 20 };
	struct relay_dir d = {0};
	struct transport src, dst;
	int writer, src_fd, reader, dst_fd, pipefd[2], small = 4096, pending;
	unsigned char *out = malloc(N), *in = malloc(N);
	size_t sent = 0, got = 0, kept = 0;
	bool readable = true, writable = true, finished = false;
	long long deadline = harness_now_ms() + 20000;

	(void)state;
	assert_true(out != NULL && in != NULL);
	for (size_t i = 0; i < N; i++)
		out[i] = (unsigned char)(i * 13 + (i >> 12));
	tcp_pair(&writer, &src_fd);
	tcp_pair(&reader, &dst_fd);
	assert_int_equal(setsockopt(dst_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	assert_int_equal(fcntl(writer, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(pipe2(pipefd, O_NONBLOCK | O_CLOEXEC), 0);
	transport_tcp(&src, src_fd);
	transport_tcp(&dst, dst_fd);
	while (!finished) {
		enum relay_status st;
		ssize_t n;

		assert_true(harness_now_ms() < deadline);
		if (sent < N) {
			n = send(writer, out + sent, N - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			if (sent == N)
				shutdown(writer, SHUT_WR);
		}
		readable = writable = true; /* as events would say, now and then */
		st = relay_splice(&d, &src, &readable, true, &dst, &writable, pipefd, 65536,
				  1 << 20);
		assert_true(st != RELAY_SRC_ERROR && st != RELAY_DST_ERROR);
		assert_int_equal(ioctl(pipefd[0], FIONREAD, &pending), 0);
		assert_int_equal(pending, 0);
		kept += d.len > 0;
		finished = st == RELAY_FINISHED;
		/* The slow reader takes a little. */
		n = recv(reader, in + got, N - got < 8192 ? N - got : 8192, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	while (got < N) {
		ssize_t n;

		assert_true(poll(&(struct pollfd){reader, POLLIN, 0}, 1, 5000) == 1);
		n = recv(reader, in + got, N - got, 0);
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_memory_equal(in, out, N);
	assert_int_equal(d.bytes, N);
	assert_true(kept > 0);                       /* the destination did turn bytes away */
	assert_int_equal(recv(reader, in, 1, 0), 0); /* the half-close arrived */
	transport_close(&src);
	transport_close(&dst);
	close(writer);
	close(reader);
	close(pipefd[0]);
	close(pipefd[1]);
	relay_dir_release(&d);
	free(out);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(moves_all_and_skips_the_last_recv),
		cmocka_unit_test(a_reported_hangup_is_read_to_the_end),
		cmocka_unit_test(a_partial_write_is_kept_and_flushed_first),
		cmocka_unit_test(eagain_on_the_destination),
		cmocka_unit_test(eagain_on_the_source),
		cmocka_unit_test(end_of_stream_half_closes_after_the_pending_bytes),
		cmocka_unit_test(errors_name_their_side),
		cmocka_unit_test(the_budget_yields),
		cmocka_unit_test(queued_text_goes_first),
		cmocka_unit_test(splice_moves_bytes_exactly_and_leaves_the_pipe_empty),
	};

	return test_exit(cmocka_run_group_tests_name("relay", tests, NULL, NULL));
}
