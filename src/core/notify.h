/* notify: everything the daemon says to or takes from systemd: readiness and
 * status (the sd_notify protocol), the watchdog, sockets passed in (socket
 * activation), and whether stderr is the journal. Each call is a no-op outside
 * systemd. A notify socket that is not read never stalls the daemon: status
 * updates and watchdog pings are not waited for (they report whether they went
 * out), and READY, RELOADING and STOPPING wait at most a second for room. */
#ifndef SOCKGATE_NOTIFY_H
#define SOCKGATE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "errbuf.h"

#define NOTIFY_LISTEN_FDS_START 3

/* READY=1, with STATUS=status if not NULL. */
void notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC, so `systemctl reload` waits for READY=1. */
void notify_reloading(void);
void notify_stopping(void);
/* False if the message could not be sent now (the socket's queue is full). */
bool notify_status(const char *status);
bool notify_watchdog(void);
/* The watchdog interval systemd asked for, or 0. */
uint64_t notify_watchdog_usec(void);

/* Sockets systemd passed (LISTEN_FDS), from fd 3 on, and their names
 * (FileDescriptorName=; "unknown" if unnamed). Returns how many, 0 if none, -1
 * on error. *names (an array of n strings) is the caller's to free. Unsets the
 * variables so children do not inherit them. */
int notify_listen_fds(char ***names, struct errbuf *err);

/* Logs through the journal's native protocol if stderr is connected to it
 * (JOURNAL_STREAM names stderr's device and inode). */
void notify_setup_logging(void);

#endif
