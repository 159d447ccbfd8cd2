/* carry: what a new process needs to take over the relayed sessions of the
 * one before it, whose sockets systemd's fd store holds (notify.h). One record
 * per session in a file of fixed-size slots in the state directory, which a
 * crash cannot corrupt beyond the slot being written: written when the session starts
 * relaying, cleared when it ends, rewritten with its counters at a planned
 * handover. The bytes a session held in user space at that moment go to a
 * side file each. Thread-safe. */
#ifndef SOCKGATE_CARRY_H
#define SOCKGATE_CARRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "errbuf.h"
#include "net.h"

/* Names in the fd store. systemd passes every name back in one environment
 * variable (LISTEN_FDNAMES), and exec() takes no string over 128 KiB: with
 * 4,000 sessions and names of 43 bytes the restart itself failed (E2BIG). So
 * the names are short: "~c" or "~u" (client, upstream) and the session's
 * slot in base 36, "~l" and a unique tag for a listening socket: at most 7
 * bytes with their separator for CARRY_MAX_FDS descriptors. No gateway name
 * (a socket unit's FileDescriptorName=) starts with '~'. */
#define CARRY_LISTEN_PREFIX "~l"
#define CARRY_NAME_MAX      24
/* Descriptors sockgate keeps in the store at most, listeners included:
 * 18,000 names of 7 bytes fit in LISTEN_FDNAMES with room to spare. */
#define CARRY_MAX_FDS 18000

/* The name of slot's client (or upstream) socket. */
void carry_session_name(int slot, bool client, char *name, size_t len);
/* Whether name is a session socket's; if so *slot and *client. */
bool carry_session_fd_name(const char *name, int *slot, bool *client);

struct carry_record {
	char id[28];
	char gateway[65];
	char user[256];                               /* "" on a gateway without login */
	char target[65];                              /* "" for the gateway's own upstream list */
	char upstream[NET_HOSTLEN + NET_PORTLEN + 4]; /* the pool member, as configured */
	struct sockaddr_storage peer;                 /* the client (a PROXY header's) */
	uint32_t peer_len;
	int64_t started_unix_ms; /* accepted */
	int64_t login_unix_ms;   /* logged in (a plain relay: connecting) */
	uint64_t bytes_in, bytes_out;
	uint8_t in_eof, in_shut, out_eof, out_shut; /* the relay's half-closes */
	uint32_t held_in, held_out; /* bytes in the side files (planned handover), or: */
};

/* held_in/held_out when the bytes could not be saved: the session cannot go
 * on without a hole in its stream, so the next process ends it. */
#define CARRY_HELD_LOST UINT32_MAX

struct carry;

/* Opens DIR/sessions, creating it (mode 0600). Records already there (the
 * process before this one) are kept for carry_found(). At most max_sessions
 * are carried at once (the store's room: FileDescriptorStoreMax=, two per
 * session, CARRY_MAX_FDS at most). NULL with err set. */
struct carry *carry_open(const char *dir, size_t max_sessions, struct errbuf *err);
void carry_free(struct carry *c);

/* Whether the process before this one handed over on purpose (SIGTERM) rather
 * than crashed; cleared for this one. */
bool carry_was_planned(const struct carry *c);
/* This process hands over on purpose: every record is final. */
void carry_set_planned(struct carry *c);

/* The records the process before left: n of them, each with its slot. Valid
 * until carry_free(); each slot is either kept by a resumed session or given
 * back with carry_drop(). */
size_t carry_found(const struct carry *c, const struct carry_record **records, const int **slots);

/* A new record; returns its slot, or -1 (out of memory, I/O error, or
 * max_sessions carried already: that session is not carried). */
int carry_put(struct carry *c, const struct carry_record *r);
/* Rewrites slot's record. */
void carry_update(struct carry *c, int slot, const struct carry_record *r);
/* The session ended: its slot is free. */
void carry_drop(struct carry *c, int slot);
/* Removes every side file left: they exist only from a planned handover to
 * the resume that takes them, and what is left belongs to sessions that did
 * not go on (relayed bytes, maybe a secret typed to the upstream). */
void carry_sweep(struct carry *c);

/* The bytes a session held for one direction at a planned handover (from the
 * client: in). 0, or -1 (then the handover loses them: logged by the caller). */
int carry_hold(struct carry *c, const char *id, bool in, const void *buf, size_t len);
/* Takes those bytes back (the file is removed): *buf (malloc'd, NULL when
 * none) and *len. -1 if they cannot be read. */
int carry_take(struct carry *c, const char *id, bool in, size_t expected, char **buf, size_t *len);

#endif
