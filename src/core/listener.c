/* listener: accept loop with descriptor-exhaustion back-off (see listener.h). */
#include "listener.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

struct listener {
	struct loop_io io;
	struct loop_timer pause;
	struct loop *loop;
	char name[NET_ADDRSTRLEN]; /* the bound address */
	bool paused;
	listener_accept_fn *on_accept;
	void *arg;
	unsigned long long paused_count; /* times accepting was paused */
};

/* Connections accepted per wakeup before other events get their turn. */
#define LISTENER_BATCH 64
/* Pause after running out of descriptors or memory. */
#define LISTENER_PAUSE_MS 100

static void listener_resume(struct loop_timer *t)
{
	struct listener *l = t->arg;

	l->paused = false;
	if (loop_io_mod(l->loop, &l->io, EPOLLIN) < 0)
		log_msg(LOG_ERR, "listener %s: cannot resume accepting", l->name);
}

static void listener_pause(struct listener *l, int e)
{
	if (l->paused)
		return;
	/* The queued connection would wake the loop again at once: stop watching
	 * the socket until some descriptors were freed. */
	if (loop_timer_arm(l->loop, &l->pause, LISTENER_PAUSE_MS, listener_resume, l) < 0)
		return;
	if (loop_io_mod(l->loop, &l->io, 0) < 0) {
		loop_timer_disarm(l->loop, &l->pause);
		return;
	}
	l->paused = true;
	if (l->paused_count++ % 100 == 0)
		log_event(LOG_WARNING, LOG_EV_LIMIT_REACHED, "accept paused",
			  LOG_FIELDS({"SOCKGATE_LISTEN", l->name},
				     {"REASON", e == EMFILE   ? "process descriptor limit"
						: e == ENFILE ? "system descriptor limit"
							      : "out of memory"}));
}

static void listener_cb(struct loop_io *io, uint32_t events)
{
	struct listener *l = io->arg;

	(void)events;
	for (int i = 0; i < LISTENER_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
			case EPERM: /* a firewall rule refused it */
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				listener_pause(l, errno);
				return;
			default: /* EAGAIN, or an error that is not the listener's */
				return;
			}
		}
		l->on_accept(l, fd, (struct sockaddr *)&ss, sl, l->arg);
	}
}

struct listener *listener_create(struct loop *loop, int fd, listener_accept_fn *on_accept,
				 void *arg, struct errbuf *err)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	l->loop = loop;
	l->on_accept = on_accept;
	l->arg = arg;
	l->io.fd = -1;
	net_format_local(fd, l->name, sizeof(l->name));
	/* Level-triggered: a batch cut short is picked up on the next round. */
	if (loop_io_add(loop, &l->io, fd, EPOLLIN, listener_cb, l) < 0) {
		errbuf_errno(err, errno, "cannot watch listener %s", l->name);
		free(l);
		return NULL;
	}
	return l;
}

void listener_free(struct listener *l)
{
	int fd;

	if (l == NULL)
		return;
	fd = l->io.fd;
	loop_timer_disarm(l->loop, &l->pause);
	loop_io_del(l->loop, &l->io);
	if (fd >= 0)
		close(fd);
	free(l);
}

const char *listener_name(const struct listener *l)
{
	return l->name;
}

int listener_fd(const struct listener *l)
{
	return l->io.fd;
}
