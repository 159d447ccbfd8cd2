/* metrics: the Prometheus endpoint. An HTTP listener (libmicrohttpd, one internal
 * thread per listening address) that answers GET /metrics with stats_render()'s
 * text and everything else with a 4xx; it reads nothing but the stats registry. */
#ifndef SOCKGATE_METRICS_H
#define SOCKGATE_METRICS_H

#include <stddef.h>
#include <sys/socket.h>

#include "errbuf.h"
#include "stats.h"

/* Limits of the listener, each per listening address. */
#define METRICS_MAX_CONNECTIONS 16
/* Of those, from one client address: a few slow clients cannot take them all
 * (the timeout below is libmicrohttpd's, for a connection without progress). */
#define METRICS_MAX_CONNECTIONS_PER_ADDRESS 4
#define METRICS_TIMEOUT_S                   5
/* The memory of one connection, request headers included: a request whose
 * headers do not fit gets 431 and a close. */
#define METRICS_CONNECTION_MEMORY 8192

struct metrics;

/* Listens on each of the n addresses (addrs[i], lens[i] bytes; port 0 picks a free
 * one, see metrics_port()) and serves st, which must outlive the listener. Answers:
 *   GET /metrics (any query)     200, Content-Type "text/plain; version=0.0.4;
 *                                charset=utf-8", the exposition; keep-alive allowed
 *   GET on any other path        404
 *   any other method             405 with "Allow: GET"
 *   a request with a body        413 (Content-Length other than 0, or Transfer-Encoding)
 *   headers beyond the memory    431; malformed requests 400 (libmicrohttpd)
 * Every error answer closes the connection. The threads it starts take no signals
 * (the daemon's main thread takes them through its signalfd). Returns NULL with
 * err filled in if an address cannot be bound or the listener cannot start; then
 * nothing is left listening. n may be 0 (a listener that serves nothing). */
struct metrics *metrics_start(struct stats *st, const struct sockaddr *const *addrs,
			      const socklen_t *lens, size_t n, struct errbuf *err);

/* Closes every listening socket and connection and joins the threads; a scrape
 * under way is finished or cut first. NULL is fine. */
void metrics_stop(struct metrics *m);

/* The port the i-th address is bound to (the kernel's choice where it was 0),
 * or 0 if i is out of range. */
unsigned metrics_port(const struct metrics *m, size_t i);

#endif
