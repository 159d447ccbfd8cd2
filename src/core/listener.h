/* listener: a listening socket on the main loop that accepts connections and
 * hands them to a callback. It protects the process: when descriptors run out
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM) it pauses accepting for a moment instead
 * of spinning, and transient errors are ignored. */
#ifndef SOCKGATE_LISTENER_H
#define SOCKGATE_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>

#include "loop.h"
#include "net.h"

struct listener;
struct gateway;

typedef void listener_accept_fn(struct listener *l, int fd, const struct sockaddr *peer,
				socklen_t peerlen, void *arg);

struct listener {
	struct loop_io io;
	struct loop_timer pause;
	struct loop *loop;
	struct listener *next;
	struct gateway *gw;             /* whom it serves; a reference, replaced on reload */
	struct sockaddr_storage cfg_ss; /* the configured address it was bound for */
	socklen_t cfg_len;
	char name[NET_ADDRSTRLEN]; /* the bound address */
	bool from_systemd;
	bool paused;
	listener_accept_fn *on_accept;
	void *arg;
	unsigned long long paused_count; /* times accepting was paused */
};

/* Wraps a bound, listening socket (fd becomes the listener's). */
struct listener *listener_create(struct loop *loop, int fd, listener_accept_fn *on_accept,
				 void *arg, struct errbuf *err);
/* Stops accepting and closes the socket. */
void listener_free(struct listener *l);

#endif
