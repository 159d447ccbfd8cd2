/* endpoints: the listening sockets that serve the gateways: those systemd
 * passed in (matched to a gateway by FileDescriptorName=) and those bound for
 * the configured listen addresses. A reload re-points the sockets whose address
 * is still configured to the new gateways, binds the new addresses and closes
 * the ones no longer configured; it changes nothing when it cannot bind. The
 * main loop's thread only. */
#ifndef SOCKGATE_ENDPOINTS_H
#define SOCKGATE_ENDPOINTS_H

#include <stddef.h>
#include <sys/socket.h>

#include "errbuf.h"
#include "gateway.h"
#include "loop.h"
#include "notify.h"

/* A connection accepted for gw (a reference the callee may take). */
typedef void endpoints_accept_fn(struct gateway *gw, int fd, const struct sockaddr *peer,
				 socklen_t peerlen, void *arg);

struct endpoints;

struct endpoints *endpoints_create(struct loop *loop, endpoints_accept_fn *on_accept, void *arg,
				   struct errbuf *err);
/* Closes every listening socket. */
void endpoints_free(struct endpoints *e);

/* Takes the listening sockets systemd passed in (notify_listen_fds()): a
 * socket unit's, each for the gateway of its name in gws, and those the
 * process before kept in the fd store (CARRY_LISTEN_PREFIX), each for the
 * gateway that listens on its address now (or closed and dropped from the
 * store if none does). A socket unit's name no gateway has, or a socket that
 * is not a listening TCP socket, fails start-up (err says which). Takes every
 * fd of passed, also on failure. */
int endpoints_inherit(struct endpoints *e, struct gateway **gws, size_t n_gws,
		      const struct notify_fd *passed, size_t n, struct errbuf *err);

/* A drain: the listening sockets leave the fd store too, so that once the
 * daemon closes them the kernel stops accepting (systemd kept copies). */
void endpoints_forget_stored(struct endpoints *e);

/* From now on, every listening socket bound for the configuration is also
 * kept in systemd's fd store (and dropped from it when a reload closes it). */
void endpoints_use_fdstore(struct endpoints *e);

/* Makes the sockets serve gws: systemd's (by name) and every configured
 * address, keeping the sockets of addresses that did not change. First
 * everything that can fail (binding new addresses, a systemd socket whose
 * gateway is gone), then the switch, which cannot: on failure nothing
 * changed. */
int endpoints_bind(struct endpoints *e, struct gateway **gws, size_t n_gws, struct errbuf *err);

#endif
