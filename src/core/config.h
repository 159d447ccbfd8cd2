/* config: /etc/sockgate.conf (libconfig syntax) loaded into an immutable struct
 * config. Validation lives here and only here: every setting is checked against a
 * table of {name, type, bounds, default}, and every error names file:line and the
 * setting. A reload builds a new struct config; the old one stays valid for the
 * sessions that still hold a reference to it. */
#ifndef SOCKGATE_CONFIG_H
#define SOCKGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "errbuf.h"
#include "net.h"

#define CONFIG_DEFAULT_PATH SOCKGATE_SYSCONFDIR "/sockgate.conf"
/* A larger file is refused: it is surely not a configuration file. */
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)
/* Longest prompt or message, in bytes. */
#define CONFIG_MAX_TEXT 1024
/* The TLS 1.2 ciphers when none are set: ECDHE key exchange and AEADs only. */
#define CONFIG_TLS_CIPHERS                                                                         \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* One resolved socket address with the text it came from ("127.0.0.1:8080"). */
struct config_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[NET_HOSTLEN + NET_PORTLEN + 4]; /* as written in the file */
	char resolved[NET_ADDRSTRLEN];            /* numeric form */
};

struct config_login {
	char *username_prompt;
	char *password_prompt;
	char *success_message;
	char *failure_message;
	unsigned max_attempts;     /* failed attempts before the connection is closed */
	unsigned failure_delay_ms; /* before a failure answer, randomised 0.5x..1.5x */
	unsigned grace_time_ms;    /* to complete the login; 0 = none */
	unsigned max_empty_lines;  /* empty username lines before the connection is closed */
	unsigned second_factor;    /* enum config_second_factor */
	char *code_prompt;         /* asked after the password, with a second factor */
	unsigned totp_window;      /* time steps accepted either side of now */
	unsigned target;           /* enum config_target_mode */
	char *target_prompt;       /* "menu": asked after the list */
};

/* How a user names the target of a gateway with targets. */
enum config_target_mode {
	CONFIG_TARGET_NONE = 0, /* the gateway's own upstream */
	CONFIG_TARGET_SUFFIX,   /* "user@target" at the username prompt */
	CONFIG_TARGET_MENU,     /* a numbered list after the login */
};

enum config_authenticate {
	CONFIG_AUTHENTICATE_NO = 0, /* a plain relay */
	CONFIG_AUTHENTICATE_YES,    /* the login */
	CONFIG_AUTHENTICATE_PASS,   /* no prompt: a pass from another gateway's login */
};

enum config_proxy_accept {
	CONFIG_PROXY_ANY = 0,
	CONFIG_PROXY_V1,
	CONFIG_PROXY_V2,
};

/* PROXY protocol from the load balancers in front. */
struct config_proxy_in {
	bool enabled;
	unsigned accept;       /* enum config_proxy_accept */
	struct net_cidr *from; /* the balancers: only they may, and they must */
	size_t n_from;
	unsigned timeout_ms; /* for the whole header */
};

enum config_proxy_out {
	CONFIG_PROXY_OUT_NONE = 0,
	CONFIG_PROXY_OUT_V1,
	CONFIG_PROXY_OUT_V2,
};

enum config_balance {
	CONFIG_BALANCE_FIRST = 0, /* in order: the first that is up */
	CONFIG_BALANCE_ROUNDROBIN,
	CONFIG_BALANCE_LEASTCONN,
	CONFIG_BALANCE_SOURCE, /* by the client's address */
};

/* Active TCP checks of the upstreams. */
struct config_health {
	bool enabled;
	unsigned interval_ms, timeout_ms;
	unsigned fall, rise; /* failed / passed checks that change the state */
};

/* A named upstream pool, and who may use it. */
struct config_target {
	char *name;
	struct config_addr *upstream;
	size_t n_upstream;
	char **users; /* n_users names */
	size_t n_users;
	char **groups;
	size_t n_groups;
};

/* A gateway that admits by pass: whoever logged in on from_gateway from the
 * same address within duration. */
struct config_pass {
	bool enabled; /* the group is there */
	char *from_gateway;
	uint64_t duration_ms;
};

enum config_second_factor {
	CONFIG_FACTOR_NONE = 0,
	CONFIG_FACTOR_TOTP,
};

/* Where a gateway's users and their passwords come from. */
enum config_auth {
	CONFIG_AUTH_FILE = 0, /* the credentials file */
	CONFIG_AUTH_PAM,      /* a PAM service: its conversation is the dialogue */
};

enum config_tls_version {
	CONFIG_TLS_1_2 = 0,
	CONFIG_TLS_1_3,
};

enum config_verify_client {
	CONFIG_VERIFY_NONE = 0,
	CONFIG_VERIFY_OPTIONAL, /* a certificate is checked if the client sends one */
	CONFIG_VERIFY_REQUIRED, /* no valid certificate, no prompt */
};

/* Session recordings of a gateway. */
struct config_record {
	bool enabled;
	char *directory;
	uint64_t max_bytes;       /* one session's recording */
	uint64_t max_total_bytes; /* the directory's, all gateways that share it */
};

/* TLS on the gateway's listeners. Paths: as written, and resolved as the
 * credentials path is. */
struct config_tls {
	bool enabled;                         /* the group is there: the listeners speak only TLS */
	char *certificate, *certificate_path; /* PEM: the leaf, then the chain */
	char *key, *key_path;                 /* PEM; the credentials file's checks */
	unsigned min_version;                 /* enum config_tls_version */
	char *ciphers;                        /* TLS 1.2, OpenSSL's syntax */
	char *ciphersuites;                   /* TLS 1.3; NULL: OpenSSL's */
	char *client_ca, *client_ca_path;     /* NULL: no client certificates */
	unsigned verify_client;               /* enum config_verify_client */
	bool session_tickets;
	unsigned ticket_rotation_ms; /* a new ticket key this often; 2 old ones still read */
	bool ktls;                   /* ask OpenSSL for kernel TLS */
};

/* TLS to the upstream. */
struct config_upstream_tls {
	bool enabled;
	char *ca, *ca_path; /* NULL: the system's trusted CAs */
	char *server_name;  /* SNI and the name verified; NULL: the host */
	bool verify;
	char *certificate, *certificate_path; /* a client certificate, or NULL */
	char *key, *key_path;
	unsigned min_version; /* enum config_tls_version */
	bool ktls;
};

struct config_gateway {
	char *name; /* unique; also the FileDescriptorName= of its sockets */
	int line;   /* where it starts in the file, for messages */
	struct config_addr *listen;
	size_t n_listen;
	struct config_addr *upstream; /* tried in order until one connects */
	size_t n_upstream;
	bool authenticate;          /* the login: authenticate_mode is YES */
	unsigned authenticate_mode; /* enum config_authenticate */
	struct config_pass pass;    /* authenticate = "pass" */
	unsigned auth;              /* enum config_auth */
	char *pam_service;          /* auth = pam: the service (/etc/pam.d/NAME) */
	char *pam_config_dir;       /* as written; NULL: PAM's own (/etc/pam.d) */
	char *pam_config_dir_path;
	char *credentials;      /* as written; NULL without authenticate */
	char *credentials_path; /* resolved: $CREDENTIALS_DIRECTORY/x for relative paths */
	struct config_login login;
	unsigned connect_timeout_ms;    /* per upstream address; 0 = kernel default */
	uint64_t idle_timeout_ms;       /* relayed session without traffic; 0 = none;
					 * 64 bits: up to a year does not fit in 32 */
	uint64_t session_timeout_ms;    /* a logged-in session's whole life; 0 = none */
	unsigned max_sessions;          /* open sessions of this gateway, all states */
	unsigned max_sessions_per_user; /* logged-in sessions of one user; 0 = no limit */
	struct config_tls tls;
	struct config_upstream_tls upstream_tls;
	struct config_proxy_in proxy_protocol;
	unsigned upstream_proxy_protocol;          /* enum config_proxy_out */
	unsigned upstream_proxy_protocol_user_tlv; /* user; then gateway, signature, target */
	char *upstream_proxy_protocol_key, *upstream_proxy_protocol_key_path;
	unsigned balance; /* enum config_balance */
	struct config_health health;
	struct config_target *targets;
	size_t n_targets;
	struct net_cidr *allow, *deny; /* checked before anything else; no allow: all */
	size_t n_allow, n_deny;
	struct config_record record;
};

/* Brute-force defences, per source (netblock); see penalty.h. */
struct config_penalties {
	bool enabled;
	unsigned authfail_ms, grace_ms, noauth_ms, min_ms, max_ms;
	unsigned ipv4_bits, ipv6_bits;
	unsigned max_sources; /* sources tracked at once */
	struct net_cidr *exempt;
	size_t n_exempt;
};

/* Caps that protect the whole daemon. */
struct config_limits {
	unsigned auth_queue;
	unsigned pam_threads;
	/* PAM transactions at once */ /* password checks waiting, all gateways */
	unsigned startups_begin;       /* logging-in connections, all gateways: from */
	unsigned startups_rate;        /* here refuse this % of new ones, rising */
	unsigned startups_full;        /* to all of them here */
	unsigned per_source_startups;  /* logging-in connections per source; 0 = no cap */
};

/* Lines about connections that never logged in (see lograte.h). */
struct config_log_limits {
	unsigned per_source;  /* full lines per source and interval; 0: every line */
	unsigned per_second;  /* full lines overall */
	unsigned interval_ms; /* per-source window and summary period */
};

/* The control socket of sockgatectl. */
struct config_control {
	bool enabled;
	char *socket; /* a path */
	char *group;  /* besides root, the group whose members may use it; NULL: root only */
};

/* The Prometheus listener. */
struct config_metrics {
	bool enabled;
	struct config_addr *listen;
	size_t n_listen;
};

struct config {
	int refs; /* atomic; see config_ref() */
	char *path;
	unsigned workers;               /* relay event loops; 0 in the file means "auto" */
	unsigned auth_threads;          /* password-check threads; 0 means "auto" */
	unsigned auth_threads_relaying; /* of those, at once while sessions relay; 0 "auto" */
	unsigned relay_buffer;          /* bytes read per system call when relaying */
	bool revoke_on_reload;          /* a reload ends sessions of removed or changed users */
	struct config_limits limits;
	struct config_penalties penalties;
	struct config_log_limits log_limits;
	struct config_control control;
	struct config_metrics metrics;
	struct config_gateway *gateways;
	size_t n_gateways;
};

/* Reads and validates path. Listen and upstream names are resolved here, once, so
 * nothing blocks on DNS later. Relative credentials paths are resolved against
 * $CREDENTIALS_DIRECTORY if set, else against the configuration file's directory.
 * Durations are seconds in the file (fractions allowed, as in 0.5) and
 * milliseconds in the struct. Only a regular file of at most CONFIG_MAX_FILE_SIZE
 * bytes is read. Returns NULL with "FILE:LINE: SETTING: problem" in err (for
 * syntax errors "FILE:LINE: problem"; when the file cannot be read at all,
 * "FILE: problem"). */
struct config *config_load(const char *path, struct errbuf *err);

/* The same from a string (for tests and fuzzing); name is used in messages and
 * to resolve relative paths. */
struct config *config_parse(const char *name, const char *text, struct errbuf *err);

enum config_parse_flags {
	/* Listen and upstream hosts must be numeric addresses ("127.0.0.1",
	 * "[::1]", "*"); a name is refused without asking the resolver. For
	 * fuzzing and tests, which must never wait on DNS. */
	CONFIG_PARSE_NUMERIC_HOSTS = 1 << 0,
};

/* config_parse() with flags from enum config_parse_flags; config_parse() and
 * config_load() pass 0. */
struct config *config_parse_flags(const char *name, const char *text, unsigned flags,
				  struct errbuf *err);

/* A loaded config starts with one reference. Sessions and gateways take their
 * own, so a reload can replace the config while live sessions keep theirs.
 * Both are thread-safe. config_unref(NULL) does nothing. */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Settings that load but work against each other or leave a door open (the
 * shipped defaults raise none): calls warn once per problem with a sentence
 * naming the settings. Returns how many there were. */
typedef void config_warn_fn(const char *msg, void *arg);
unsigned config_warnings(const struct config *cfg, config_warn_fn *warn, void *arg);

/* The gateway called name, or NULL. */
const struct config_gateway *config_find_gateway(const struct config *cfg, const char *name);

#endif
