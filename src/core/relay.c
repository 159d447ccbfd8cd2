/* relay: the byte pump (see relay.h). */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void relay_dir_release(struct relay_dir *d)
{
	if (d->buf != NULL) {
		explicit_bzero(d->buf, d->off + d->len);
		free(d->buf);
	}
	d->buf = NULL;
	d->off = 0;
	d->len = 0;
}

int relay_queue(struct relay_dir *d, const void *data, size_t len)
{
	char *nb;

	if (len == 0)
		return 0;
	if ((size_t)d->len + len > UINT32_MAX) {
		errno = ENOMEM;
		return -1;
	}
	nb = malloc(d->len + len);
	if (nb == NULL)
		return -1;
	if (d->len > 0)
		memcpy(nb, d->buf + d->off, d->len);
	memcpy(nb + d->len, data, len);
	if (d->buf != NULL) {
		explicit_bzero(d->buf, d->off + d->len);
		free(d->buf);
	}
	d->buf = nb;
	d->off = 0;
	d->len += (uint32_t)len;
	return 0;
}

int relay_flush(struct relay_dir *d, struct transport *dst, bool *dst_writable)
{
	while (d->len > 0) {
		ssize_t n = transport_send(dst, d->buf + d->off, d->len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				*dst_writable = false;
				return 1;
			}
			return -1;
		}
		d->off += (uint32_t)n;
		d->len -= (uint32_t)n;
	}
	relay_dir_release(d);
	return 0;
}

/* Keeps the unwritten tail of a chunk: a block of exactly its size, so a stalled
 * session holds what is in flight and nothing more. */
static int relay_keep(struct relay_dir *d, const char *data, size_t len)
{
	d->buf = malloc(len);
	if (d->buf == NULL)
		return -1;
	memcpy(d->buf, data, len);
	d->off = 0;
	d->len = (uint32_t)len;
	return 0;
}

enum relay_status relay_pump(struct relay_dir *d, struct transport *src, bool *src_readable,
			     bool src_drain, struct transport *dst, bool *dst_writable,
			     char *scratch, size_t scratch_len, size_t budget)
{
	size_t moved = 0;

	if (d->len > 0) {
		int r;

		if (!*dst_writable)
			return RELAY_BLOCKED;
		r = relay_flush(d, dst, dst_writable);
		if (r < 0)
			return RELAY_DST_ERROR;
		if (r > 0)
			return RELAY_BLOCKED;
	}
	while (!d->eof && *src_readable) {
		ssize_t n, w;

		if (moved >= budget)
			return RELAY_YIELD;
		n = transport_recv(src, scratch, scratch_len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				*src_readable = false;
				break;
			}
			return RELAY_SRC_ERROR;
		}
		if (n == 0) {
			d->eof = true;
			break;
		}
		d->bytes += (uint64_t)n;
		moved += (size_t)n;
		if (d->tap != NULL)
			d->tap(d, scratch, (size_t)n);
		/* A short read emptied the socket: the next byte brings a new edge,
		 * so skip the recv() that would only say EAGAIN. Not when an event
		 * reported a hang-up (the EOF behind the data brings no further edge)
		 * or urgent data (recv() stops short at the urgent mark), nor when the
		 * transport holds more than the socket does (TLS). */
		if ((size_t)n < scratch_len && !src_drain && !transport_pending(src))
			*src_readable = false;
		w = 0;
		if (*dst_writable) {
			do
				w = transport_send(dst, scratch, (size_t)n);
			while (w < 0 && errno == EINTR);
			if (w < 0) {
				if (errno != EAGAIN)
					return RELAY_DST_ERROR;
				w = 0;
			}
		}
		if (w < n) {
			*dst_writable = false;
			if (relay_keep(d, scratch + w, (size_t)(n - w)) < 0) {
				errno = ENOMEM;
				return RELAY_DST_ERROR;
			}
			return RELAY_BLOCKED;
		}
	}
	if (d->eof && d->len == 0) {
		if (!d->shut) {
			/* Half-close: the peer sees EOF and may still answer. */
			if (transport_shutdown(dst) < 0) {
				if (errno != EAGAIN)
					return RELAY_DST_ERROR;
				*dst_writable = false; /* TLS: close_notify waits for room */
				return RELAY_BLOCKED;
			}
			d->shut = true;
		}
		return RELAY_FINISHED;
	}
	return RELAY_BLOCKED;
}

/* What dst did not take stays in the (shared) pipe: read it out into d's buffer,
 * so the pipe is empty for the next session. */
static int relay_unpipe(struct relay_dir *d, int pipe_r, size_t len)
{
	size_t got = 0;

	d->buf = malloc(len);
	if (d->buf == NULL)
		return -1;
	while (got < len) {
		ssize_t n = read(pipe_r, d->buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(d->buf);
			d->buf = NULL;
			errno = n < 0 ? errno : EIO;
			return -1;
		}
		got += (size_t)n;
	}
	d->off = 0;
	d->len = (uint32_t)len;
	return 0;
}

enum relay_status relay_splice(struct relay_dir *d, struct transport *src, bool *src_readable,
			       bool src_drain, struct transport *dst, bool *dst_writable,
			       const int pipe[2], size_t pipe_len, size_t budget)
{
	size_t moved = 0;

	if (d->len > 0) {
		int r;

		if (!*dst_writable)
			return RELAY_BLOCKED;
		r = relay_flush(d, dst, dst_writable);
		if (r < 0)
			return RELAY_DST_ERROR;
		if (r > 0)
			return RELAY_BLOCKED;
	}
	while (!d->eof && *src_readable) {
		ssize_t n, w = 0, out = 0;

		if (moved >= budget)
			return RELAY_YIELD;
		n = splice(src->fd, NULL, pipe[1], NULL, pipe_len,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				*src_readable = false;
				break;
			}
			return RELAY_SRC_ERROR;
		}
		if (n == 0) {
			d->eof = true;
			break;
		}
		d->bytes += (uint64_t)n;
		moved += (size_t)n;
		if ((size_t)n < pipe_len && !src_drain)
			*src_readable = false;
		while (*dst_writable && out < n) {
			w = splice(pipe[0], NULL, dst->fd, NULL, (size_t)(n - out),
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno == EAGAIN) {
				*dst_writable = false;
				break;
			}
			if (w <= 0) {
				int e = w < 0 ? errno : EPIPE;

				/* Empty the shared pipe before giving up. */
				(void)relay_unpipe(d, pipe[0], (size_t)(n - out));
				relay_dir_release(d);
				errno = e;
				return RELAY_DST_ERROR;
			}
			out += w;
		}
		if (out < n) {
			if (relay_unpipe(d, pipe[0], (size_t)(n - out)) < 0) {
				errno = ENOMEM;
				return RELAY_DST_ERROR;
			}
			return RELAY_BLOCKED;
		}
	}
	if (d->eof && d->len == 0) {
		if (!d->shut) {
			if (transport_shutdown(dst) < 0) {
				if (errno != EAGAIN)
					return RELAY_DST_ERROR;
				*dst_writable = false;
				return RELAY_BLOCKED;
			}
			d->shut = true;
		}
		return RELAY_FINISHED;
	}
	return RELAY_BLOCKED;
}
