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

/* A descriptor systemd passed in and its name (FileDescriptorName= or FDNAME=;
 * "unknown" if unnamed). */
struct notify_fd {
	int fd;
	char *name;
};

/* The descriptors systemd passed (LISTEN_FDS, from fd 3 on): a socket unit's
 * and those of the fd store. Returns how many, 0 if none, -1 on error. *fds
 * is the caller's to free with notify_fds_free(). Unsets the variables so
 * children do not inherit them. */
int notify_listen_fds(struct notify_fd **fds, struct errbuf *err);
void notify_fds_free(struct notify_fd *fds, size_t n);

/* systemd's file descriptor store (FileDescriptorStoreMax=): descriptors the
 * service hands to PID 1, which keeps them across a restart or a crash and
 * passes them back with the sockets (LISTEN_FDS, named by FDNAME=). On when
 * $FDSTORE is a positive number (systemd 254 sets it from
 * FileDescriptorStoreMax=; the shipped unit sets it for 252) and there is a
 * notify socket. Call it first on the main thread. */
#define NOTIFY_FDNAME_MAX 255
#define NOTIFY_MAX_FDS    4
bool notify_fdstore_enabled(void);
/* Stores fds (at most NOTIFY_MAX_FDS) under name (printable ASCII, no ':');
 * waits up to a second for room. False if the message could not go out. */
bool notify_fdstore_add(const char *name, const int *fds, size_t n);
/* Drops every stored descriptor named name. */
bool notify_fdstore_remove(const char *name);

/* Logs through the journal's native protocol if stderr is connected to it
 * (JOURNAL_STREAM names stderr's device and inode). */
void notify_setup_logging(void);

#endif
