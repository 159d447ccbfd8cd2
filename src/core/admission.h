/* admission: what happens to a connection between its accept and its session.
 * The cheapest checks come first, and all of them before any password is
 * looked at: random early drop over the connections logging in (OpenSSH's
 * MaxStartups), the source's penalty and its cap of logins under way (the
 * penalty table), the gateway's max_sessions. A refused client gets one line
 * and the close; the refusal is logged within the log limits (lograte). Runs
 * on the accepting thread. Address lists and PROXY protocol sources will be
 * checked here too. */
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

/* An admitted connection could not start after all (out of memory): gives back
 * its slot and ticket, tells the client and closes fd. */
void admission_cancel(struct admission *a, struct gateway *gw, int fd, const struct sockaddr *peer,
		      uint32_t ticket, uint64_t now_ms);

#endif
