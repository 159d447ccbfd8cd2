/* listener: a listening socket on the main loop that accepts connections and
 * hands them to a callback. It protects the process: when descriptors run out
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM) it pauses accepting for a moment instead
 * of spinning, and transient errors are ignored. */
#ifndef SOCKGATE_LISTENER_H
#define SOCKGATE_LISTENER_H

#include <sys/socket.h>

#include "loop.h"
#include "net.h"

struct listener;

typedef void listener_accept_fn(struct listener *l, int fd, const struct sockaddr *peer,
				socklen_t peerlen, void *arg);

/* Wraps a bound, listening socket (fd becomes the listener's). */
struct listener *listener_create(struct loop *loop, int fd, listener_accept_fn *on_accept,
				 void *arg, struct errbuf *err);
/* Stops accepting and closes the socket. */
void listener_free(struct listener *l);

/* The bound address, formatted ("127.0.0.1:2323"), and the socket. */
const char *listener_name(const struct listener *l);
int listener_fd(const struct listener *l);

#endif
