/* transport: how a session reads and writes the bytes of one side of a
 * connection. Plain TCP today; TLS comes in under the same calls, so the login
 * dialogue and the relay do not know which one they speak. A transport owns its
 * descriptor; the session registers the descriptor with its loop. */
#ifndef SOCKGATE_TRANSPORT_H
#define SOCKGATE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct transport;

/* Calls behave as recv(2)/send(2) on a non-blocking socket: recv returns the
 * bytes read, 0 at the end of the stream, or -1 with errno (EAGAIN: nothing now);
 * send returns the bytes taken or -1 with errno (EAGAIN: full now; EPIPE,
 * ECONNRESET: the peer is gone). */
struct transport_ops {
	const char *name; /* for logs: "tcp" */
	ssize_t (*recv)(struct transport *t, void *buf, size_t len);
	ssize_t (*send)(struct transport *t, const void *buf, size_t len);
	/* No more bytes will be sent: the peer sees the end of the stream, and may
	 * still answer. 0, or -1 with errno (EAGAIN: try again once writable). */
	int (*shutdown)(struct transport *t);
	/* Bytes (or the end) already taken off the socket and waiting inside: a
	 * short read does not prove the socket empty then. NULL: never. */
	bool (*pending)(const struct transport *t);
	/* After an event: what the socket's readiness means for the transport's
	 * calls (TLS may need to write to read on, or read to write on). NULL:
	 * the same. */
	void (*ready)(struct transport *t, bool *readable, bool *writable);
	/* Releases everything, the descriptor included. */
	void (*close)(struct transport *t);
};

struct transport {
	const struct transport_ops *ops; /* NULL: not open */
	int fd;
	void *state; /* the implementation's (TLS) */
};

/* Plain TCP on the connected, non-blocking socket fd. */
void transport_tcp(struct transport *t, int fd);

static inline bool transport_open(const struct transport *t)
{
	return t->ops != NULL;
}

static inline ssize_t transport_recv(struct transport *t, void *buf, size_t len)
{
	return t->ops->recv(t, buf, len);
}

static inline ssize_t transport_send(struct transport *t, const void *buf, size_t len)
{
	return t->ops->send(t, buf, len);
}

static inline int transport_shutdown(struct transport *t)
{
	return t->ops->shutdown(t);
}

static inline bool transport_pending(const struct transport *t)
{
	return t->ops->pending != NULL && t->ops->pending(t);
}

static inline void transport_ready(struct transport *t, bool *readable, bool *writable)
{
	if (t->ops != NULL && t->ops->ready != NULL)
		t->ops->ready(t, readable, writable);
}

/* Closes t if it is open; it reads as not open afterwards. */
void transport_close(struct transport *t);

#endif
