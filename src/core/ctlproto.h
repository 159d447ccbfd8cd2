/* ctlproto: the control socket's requests (sockgatectl to the daemon): one
 * line of words, a command and NAME=VALUE arguments, parsed strictly. Pure:
 * the fuzzer and both ends share it. */
#ifndef SOCKGATE_CTLPROTO_H
#define SOCKGATE_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "errbuf.h"
#include "net.h"

#define CTL_MAX_REQUEST 1024 /* bytes of a request line, newline included */

enum ctl_command {
	CTL_STATUS = 0,
	CTL_SESSIONS,  /* [gateway=] [user=] */
	CTL_KILL,      /* id= | user= | source= (one of them) */
	CTL_PENALTIES, /* [lift source=] */
	CTL_UPSTREAMS,
	CTL_PASSES, /* [revoke source= | user=] */
	CTL_RELOAD,
	CTL_DRAIN,   /* [timeout=SECONDS] */
	CTL_RESTART, /* hand the sessions over and exit for systemd to start anew */
	CTL__COMMANDS
};

struct ctl_request {
	enum ctl_command cmd;
	bool json;   /* answer in JSON, else an aligned table */
	bool change; /* "penalties lift", "passes revoke" */
	char gateway[65];
	char user[256];
	char id[32];
	bool has_source;
	struct net_cidr source;
	unsigned timeout_s; /* drain; 0: the default */
};

/* Parses one request (len bytes, without its newline). Returns 0, or -1 with
 * why saying what is wrong ("unknown command \"x\"", "kill needs id=, user=
 * or source=", ...). */
int ctl_parse(const char *line, size_t len, struct ctl_request *r, struct errbuf *why);

/* The command's word ("sessions"). */
const char *ctl_command_name(enum ctl_command cmd);

#endif
