/* relay: moves bytes one way between two transports (non-blocking sockets,
 * plain or not: see transport.h). The cost here is
 * per system call, not per byte, so reads are large (the worker's scratch buffer)
 * and a session holds a buffer only while bytes are in flight: what the
 * destination did not take is kept in a heap block of exactly that size, and
 * nothing more is read from the source until it is written (backpressure). */
#ifndef SOCKGATE_RELAY_H
#define SOCKGATE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

/* One direction. Readiness flags are the edge-triggered state of the two
 * sockets: set by events, cleared when a call meets EAGAIN. */
struct relay_dir;
/* Sees each chunk as it is read from the source, before it is written
 * (session recordings); d tells the direction. */
typedef void relay_tap_fn(struct relay_dir *d, const char *buf, size_t len);

struct relay_dir {
	char *buf;         /* pending bytes for the destination, or NULL */
	uint32_t off;      /* first unwritten byte in buf */
	uint32_t len;      /* bytes in buf from off */
	uint64_t bytes;    /* read from the source so far (relay_queue does not count) */
	bool eof;          /* the source has no more to send */
	bool shut;         /* the destination was shut down for writing */
	relay_tap_fn *tap; /* or NULL; relay_pump() only, relay_splice() never copies */
};

enum relay_status {
	RELAY_BLOCKED = 0, /* waiting for readability or writability */
	RELAY_YIELD,       /* budget used up with more to do: call again soon */
	RELAY_FINISHED,    /* source at EOF, all written, destination shut */
	RELAY_SRC_ERROR,   /* reading the source failed (reset, ...); errno says why */
	RELAY_DST_ERROR,   /* writing the destination failed; errno says why */
};

/* Pumps src -> dst until blocked, finished or budget bytes were moved.
 * src_readable/dst_writable are the sockets' readiness flags (updated);
 * src_drain says a short read does not prove the source empty (an event
 * reported a hang-up or urgent data): then it is read until EAGAIN. */
enum relay_status relay_pump(struct relay_dir *d, struct transport *src, bool *src_readable,
			     bool src_drain, struct transport *dst, bool *dst_writable,
			     char *scratch, size_t scratch_len, size_t budget);

/* The same without copying the bytes through user space: src -> pipe -> dst with
 * splice(2), for a direction whose destination the kernel encrypts (kTLS) and
 * whose source is a plain socket. pipe is a pipe of the loop's, empty between
 * calls: what dst does not take is read back out of it into d's buffer. */
enum relay_status relay_splice(struct relay_dir *d, struct transport *src, bool *src_readable,
			       bool src_drain, struct transport *dst, bool *dst_writable,
			       const int pipe[2], size_t pipe_len, size_t budget);

/* Writes pending bytes to dst. 0 when nothing is pending any more, 1 when some
 * remain (dst is full), -1 on error. */
int relay_flush(struct relay_dir *d, struct transport *dst, bool *dst_writable);

/* Appends data to the pending bytes (login texts, bytes read ahead). Returns 0,
 * or -1 when out of memory. Callers bound what they queue. */
int relay_queue(struct relay_dir *d, const void *data, size_t len);

/* Frees the pending buffer (wiping it: it may hold a pipelined secret). */
void relay_dir_release(struct relay_dir *d);

#endif
