/* admission: what happens to a connection between its accept and its session.
 * The cheapest checks come first, and all of them before any password is
 * looked at: random early drop over the connections logging in (OpenSSH's
 * MaxStartups), the gateway's address lists, the source's penalty and its cap
 * of logins under way (the penalty table), the gateway's max_sessions. A
 * refused client gets one line and the close; the refusal is logged within
 * the log limits (lograte). Runs on the accepting thread. Behind a load
 * balancer (proxy_protocol) the source is known only once the session has
 * read the PROXY header: then the per-source checks run there, later. */
#ifndef SOCKGATE_ADMISSION_H
#define SOCKGATE_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "errbuf.h"
#include "gateway.h"
#include "lograte.h"
#include "penalty.h"
#include "stats.h"

struct admission;

/* Admission against pt's penalties and caps (may be NULL: none), logging
 * refusals through lr. */
struct admission *admission_create(struct penalty_table *pt, struct lograte *lr,
				   struct errbuf *err);
void admission_free(struct admission *a);

/* A connection on fd from peer wants a session of gw, while logging_in
 * connections (all gateways) are logging in. True: it may start; the gateway's
 * session slot is reserved and *ticket is the penalty table's (see
 * penalty_admit()). False: the client was told why, fd is closed. */
bool admission_admit(struct admission *a, const struct config_limits *lim, struct gateway *gw,
		     unsigned logging_in, int fd, const struct sockaddr *peer, uint64_t now_ms,
		     uint32_t *ticket);

/* Why a source is refused: what the client is told, and the log's reason. */
struct admission_refusal {
	const char *message;
	char reason[80];
	enum stats_refusal why; /* its metrics label */
};

/* The per-source checks for a client whose address came in a PROXY header
 * (thread-safe, for the session's loop): the gateway's address lists, the
 * source's penalty and cap. True: *ticket is the penalty table's (0: none).
 * False: r says why; the caller tells the client and logs it. */
bool admission_check_source(struct admission *a, const struct config_gateway *cfg,
			    const struct sockaddr *peer, uint64_t now_ms, uint32_t *ticket,
			    struct admission_refusal *r);

/* Whether a gateway's address lists let peer in. */
bool admission_listed(const struct config_gateway *cfg, const struct sockaddr *peer);

/* An admitted connection could not start after all (out of memory): gives back
 * its slot and ticket, tells the client and closes fd. */
void admission_cancel(struct admission *a, struct gateway *gw, int fd, const struct sockaddr *peer,
		      uint32_t ticket, uint64_t now_ms);

#endif
