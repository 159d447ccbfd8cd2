/* transport: plain TCP (see transport.h). */
#include "transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t tcp_recv(struct transport *t, void *buf, size_t len)
{
	return recv(t->fd, buf, len, 0);
}

static ssize_t tcp_send(struct transport *t, const void *buf, size_t len)
{
	return send(t->fd, buf, len, MSG_NOSIGNAL);
}

static int tcp_shutdown(struct transport *t)
{
	/* ENOTCONN: the peer reset meanwhile; nothing is left to tell it. */
	if (shutdown(t->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		return -1;
	return 0;
}

static void tcp_close(struct transport *t)
{
	close(t->fd);
}

static const struct transport_ops tcp_ops = {
	.name = "tcp",
	.recv = tcp_recv,
	.send = tcp_send,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
};

void transport_tcp(struct transport *t, int fd)
{
	t->ops = &tcp_ops;
	t->fd = fd;
	t->state = NULL;
}

void transport_close(struct transport *t)
{
	if (t->ops == NULL)
		return;
	t->ops->close(t);
	t->ops = NULL;
	t->fd = -1;
	t->state = NULL;
}
