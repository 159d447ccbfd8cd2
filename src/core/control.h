/* control: the daemon's control socket, the other end of sockgatectl(8). A
 * unix stream socket on the main loop; a client sends one request line
 * (ctlproto.h) and reads one answer: "OK\n" or "ERROR reason\n", then a table
 * or JSON. Only root and members of the configured group may use it, checked
 * with SO_PEERCRED whatever the file's mode. Few connections at once, small
 * requests, a deadline for each: a client can cost the daemon little. What
 * the workers hold is asked of them on their own loops (worker_call()). */
#ifndef SOCKGATE_CONTROL_H
#define SOCKGATE_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "errbuf.h"
#include "gateway.h"
#include "loop.h"
#include "table.h"
#include "worker.h"

/* What the control socket reaches of the daemon. */
struct control_env {
	struct loop *loop; /* the main loop */
	struct worker **workers;
	unsigned n_workers;
	struct penalty_table *penalties;
	struct passes *passes;
	void *arg; /* for the callbacks, the daemon */
	/* The gateways in force (a reload replaces them). */
	struct gateway **(*gateways)(void *arg, size_t *n);
	/* status: rows of "key", "value". */
	void (*status)(void *arg, struct table *t);
	/* reload: 0, or -1 with why. */
	int (*reload)(void *arg, char *why, size_t len);
	/* drain: stop accepting; exit when the last session ends or after timeout_s. */
	void (*drain)(void *arg, unsigned timeout_s);
	/* restart: 0 (the process hands its sessions over and exits for systemd to
	 * start anew), or -1 with why (no fd store: it would end them). */
	int (*restart)(void *arg, char *why, size_t len);
};

struct control;

/* Listens on cfg->socket (replacing a stale socket file). */
struct control *control_start(const struct config_control *cfg, const struct control_env *env,
			      struct errbuf *err);
/* Closes the socket and its connections; on the main loop. */
void control_stop(struct control *c);

#endif
