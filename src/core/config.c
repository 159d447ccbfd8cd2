/* config: reads sockgate.conf with libconfig and turns it into a struct config.
 * Every setting is a row in a per-section table; one typed handler per kind of
 * value checks and stores it, so all validation and every message live here. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

#define CONFIG_MAX_NAME 64       /* gateway names: systemd's FileDescriptorName= limit is 255 */
#define CONFIG_MAX_PATH PATH_MAX /* credentials path as written */
#define MS_PER_S        1000LL

/* What one load needs besides the tables: where messages point and where
 * relative paths start. */
struct loader {
	const char *name;     /* the file, as given; starts every message */
	char *dir;            /* absolute directory of name, for relative paths */
	const char *cred_dir; /* $CREDENTIALS_DIRECTORY, or NULL */
	struct config *cfg;   /* being built; freed by the caller on failure */
	unsigned flags;       /* enum config_parse_flags */
	struct errbuf *err;
};

enum option_type {
	OPT_UINT,      /* integer in [min, max] */
	OPT_AUTO_UINT, /* "auto" or 0 (both stored as 0), or an integer in [min, max] */
	OPT_DURATION,  /* seconds, integer or fractional; stored in ms; min/max/def in ms */
	OPT_STRING,    /* string of min..max bytes */
	OPT_NAME,      /* as OPT_STRING, limited to [A-Za-z0-9_.-] */
	OPT_PATH,      /* file name; offset2 receives the resolved path */
	OPT_ADDRS,     /* "HOST:PORT" or a list of them, resolved; offset2 is the count */
	OPT_GROUP,     /* { ... } parsed with sub; offset shifts the base */
	OPT_GROUPS,    /* ( { ... }, ... ) parsed with sub; offset2 is the count */
	OPT_BOOL,      /* true or false */
	OPT_CIDRS,     /* "ADDRESS[/BITS]" or a list of them; offset2 is the count */
	OPT_ENUM,      /* one of names[], stored as its index (unsigned); def is an index;
			* true and false count as "true" and "false" if names has them */
	OPT_STRINGS,   /* a string or a list of them, min..max bytes each; offset2 is the count */
	OPT_N_TYPES
};

enum option_flags {
	OPT_REQUIRED = 1 << 0,
	OPT_PASSIVE = 1 << 1, /* OPT_ADDRS for bind(): allows "*" and port 0 */
	/* OPT_GROUP that turns a feature on: absent, it is not loaded at all (no
	 * defaults, no required settings); present, the bool at offset2 is set. */
	OPT_OPTIONAL = 1 << 2,
};

struct section;

/* One setting. Bounds, defaults and the destination field are data, so adding a
 * setting is adding a row; what the value means is left to the module using it. */
struct option {
	const char *name;
	enum option_type type;
	unsigned flags;
	long long min, max;        /* value bounds; length bounds for strings and lists */
	long long def;             /* default of a number */
	const char *def_str;       /* default of a string; NULL: none */
	size_t offset, size;       /* the field, relative to the section's base */
	size_t offset2;            /* count (lists) or resolved path (OPT_PATH) */
	size_t elem_size;          /* OPT_GROUPS: one element of the array */
	const struct section *sub; /* OPT_GROUP, OPT_GROUPS */
	const char *const *names;  /* OPT_ENUM: the values, NULL-terminated */
};

struct section {
	const struct option *options; /* ends with a row whose name is NULL */
	/* Cross-setting checks once every row is stored; s is the group itself, or
	 * its parent when the group was absent. */
	int (*finish)(struct loader *ld, const config_setting_t *s, void *base);
};

#define FIELD(type, member) .offset = offsetof(type, member), .size = sizeof(((type *)0)->member)

static int finish_gateway(struct loader *ld, const config_setting_t *s, void *base);

/* The tables read best one setting per row. */
/* clang-format off */
static const char *const second_factors[] = { "none", "totp", NULL };
static const char *const auth_backends[] = { "file", "pam", NULL };
static const char *const target_modes[] = { "none", "suffix", "menu", NULL };
static const char *const authenticate_modes[] = { "false", "true", "pass", NULL };
static const char *const proxy_versions[] = { "any", "v1", "v2", NULL };
static const char *const proxy_out_versions[] = { "none", "v1", "v2", NULL };
static const char *const balance_modes[] = { "first", "roundrobin", "leastconn", "source", NULL };

static const struct option login_options[] = {
	{ .name = "username_prompt", .type = OPT_STRING, .min = 1, .max = CONFIG_MAX_TEXT,
	  .def_str = "Username: ", FIELD(struct config_login, username_prompt) },
	{ .name = "password_prompt", .type = OPT_STRING, .min = 1, .max = CONFIG_MAX_TEXT,
	  .def_str = "Password: ", FIELD(struct config_login, password_prompt) },
	{ .name = "success_message", .type = OPT_STRING, .min = 0, .max = CONFIG_MAX_TEXT,
	  .def_str = "Username and password are correct.\nYou are now logged in.\n",
	  FIELD(struct config_login, success_message) },
	{ .name = "failure_message", .type = OPT_STRING, .min = 0, .max = CONFIG_MAX_TEXT,
	  .def_str = "Username or password is incorrect.\n",
	  FIELD(struct config_login, failure_message) },
	{ .name = "max_attempts", .type = OPT_UINT, .min = 1, .max = 100, .def = 3,
	  FIELD(struct config_login, max_attempts) },
	{ .name = "grace_time", .type = OPT_DURATION, .min = 0, .max = 3600 * MS_PER_S,
	  .def = 30 * MS_PER_S, FIELD(struct config_login, grace_time_ms) },
	{ .name = "failure_delay", .type = OPT_DURATION, .min = 0, .max = 60 * MS_PER_S,
	  .def = 1 * MS_PER_S, FIELD(struct config_login, failure_delay_ms) },
	{ .name = "max_empty_lines", .type = OPT_UINT, .min = 1, .max = 1000, .def = 5,
	  FIELD(struct config_login, max_empty_lines) },
	{ .name = "second_factor", .type = OPT_ENUM, .names = second_factors,
	  .def = CONFIG_FACTOR_NONE, FIELD(struct config_login, second_factor) },
	{ .name = "code_prompt", .type = OPT_STRING, .min = 1, .max = CONFIG_MAX_TEXT,
	  .def_str = "Verification code: ", FIELD(struct config_login, code_prompt) },
	{ .name = "totp_window", .type = OPT_UINT, .min = 0, .max = 10, .def = 1,
	  FIELD(struct config_login, totp_window) },
	{ .name = "target", .type = OPT_ENUM, .names = target_modes, .def = CONFIG_TARGET_NONE,
	  FIELD(struct config_login, target) },
	{ .name = "target_prompt", .type = OPT_STRING, .min = 1, .max = CONFIG_MAX_TEXT,
	  .def_str = "Target: ", FIELD(struct config_login, target_prompt) },
	{ .name = NULL },
};

/* The timeouts group has no struct of its own: its base is the gateway. */
static const struct option timeouts_options[] = {
	{ .name = "connect", .type = OPT_DURATION, .min = 0, .max = 3600 * MS_PER_S,
	  .def = 5 * MS_PER_S, FIELD(struct config_gateway, connect_timeout_ms) },
	{ .name = "idle", .type = OPT_DURATION, .min = 0, .max = 31536000 * MS_PER_S, .def = 0,
	  FIELD(struct config_gateway, idle_timeout_ms) },
	{ .name = "session", .type = OPT_DURATION, .min = 0, .max = 31536000 * MS_PER_S,
	  .def = 0, FIELD(struct config_gateway, session_timeout_ms) },
	{ .name = NULL },
};

static const char *const tls_versions[] = { "1.2", "1.3", NULL };
static const char *const verify_modes[] = { "none", "optional", "required", NULL };

static const struct option tls_options[] = {
	{ .name = "certificate", .type = OPT_PATH, .flags = OPT_REQUIRED, .min = 1,
	  .max = CONFIG_MAX_PATH - 1, FIELD(struct config_tls, certificate),
	  .offset2 = offsetof(struct config_tls, certificate_path) },
	{ .name = "key", .type = OPT_PATH, .flags = OPT_REQUIRED, .min = 1,
	  .max = CONFIG_MAX_PATH - 1, FIELD(struct config_tls, key),
	  .offset2 = offsetof(struct config_tls, key_path) },
	{ .name = "min_version", .type = OPT_ENUM, .names = tls_versions, .def = CONFIG_TLS_1_2,
	  FIELD(struct config_tls, min_version) },
	{ .name = "ciphers", .type = OPT_STRING, .min = 1, .max = CONFIG_MAX_TEXT,
	  .def_str = CONFIG_TLS_CIPHERS, FIELD(struct config_tls, ciphers) },
	{ .name = "ciphersuites", .type = OPT_STRING, .min = 1, .max = CONFIG_MAX_TEXT,
	  FIELD(struct config_tls, ciphersuites) },
	{ .name = "client_ca", .type = OPT_PATH, .min = 1, .max = CONFIG_MAX_PATH - 1,
	  FIELD(struct config_tls, client_ca),
	  .offset2 = offsetof(struct config_tls, client_ca_path) },
	{ .name = "verify_client", .type = OPT_ENUM, .names = verify_modes,
	  .def = CONFIG_VERIFY_NONE, FIELD(struct config_tls, verify_client) },
	{ .name = "session_tickets", .type = OPT_BOOL, .def = 1,
	  FIELD(struct config_tls, session_tickets) },
	{ .name = "ticket_rotation", .type = OPT_DURATION, .min = 1 * MS_PER_S,
	  .max = 86400 * MS_PER_S, .def = 3600 * MS_PER_S,
	  FIELD(struct config_tls, ticket_rotation_ms) },
	{ .name = "ktls", .type = OPT_BOOL, .def = 1, FIELD(struct config_tls, ktls) },
	{ .name = NULL },
};

static const struct option upstream_tls_options[] = {
	{ .name = "ca", .type = OPT_PATH, .min = 1, .max = CONFIG_MAX_PATH - 1,
	  FIELD(struct config_upstream_tls, ca),
	  .offset2 = offsetof(struct config_upstream_tls, ca_path) },
	{ .name = "server_name", .type = OPT_STRING, .min = 1, .max = 253,
	  FIELD(struct config_upstream_tls, server_name) },
	{ .name = "verify", .type = OPT_BOOL, .def = 1, FIELD(struct config_upstream_tls, verify) },
	{ .name = "certificate", .type = OPT_PATH, .min = 1, .max = CONFIG_MAX_PATH - 1,
	  FIELD(struct config_upstream_tls, certificate),
	  .offset2 = offsetof(struct config_upstream_tls, certificate_path) },
	{ .name = "key", .type = OPT_PATH, .min = 1, .max = CONFIG_MAX_PATH - 1,
	  FIELD(struct config_upstream_tls, key),
	  .offset2 = offsetof(struct config_upstream_tls, key_path) },
	{ .name = "min_version", .type = OPT_ENUM, .names = tls_versions, .def = CONFIG_TLS_1_2,
	  FIELD(struct config_upstream_tls, min_version) },
	{ .name = "ktls", .type = OPT_BOOL, .def = 1, FIELD(struct config_upstream_tls, ktls) },
	{ .name = NULL },
};

static int finish_tls(struct loader *ld, const config_setting_t *s, void *base);
static int finish_upstream_tls(struct loader *ld, const config_setting_t *s, void *base);
static const struct section login_section = { .options = login_options };
static const struct section tls_section = { .options = tls_options, .finish = finish_tls };
static const struct section upstream_tls_section = { .options = upstream_tls_options,
						     .finish = finish_upstream_tls };
static const struct section timeouts_section = { .options = timeouts_options };

static const struct option record_options[] = {
	{ .name = "directory", .type = OPT_STRING, .flags = OPT_REQUIRED, .min = 1,
	  .max = CONFIG_MAX_PATH - 1, FIELD(struct config_record, directory) },
	{ .name = "max_bytes", .type = OPT_UINT, .min = 4096, .max = 1LL << 40,
	  .def = 100LL << 20, FIELD(struct config_record, max_bytes) },
	{ .name = "max_total_bytes", .type = OPT_UINT, .min = 4096, .max = 1LL << 50,
	  .def = 10LL << 30, FIELD(struct config_record, max_total_bytes) },
	{ .name = NULL },
};

static const struct section record_section = { .options = record_options };

static const struct option proxy_in_options[] = {
	{ .name = "accept", .type = OPT_ENUM, .names = proxy_versions, .def = CONFIG_PROXY_ANY,
	  FIELD(struct config_proxy_in, accept) },
	{ .name = "from", .type = OPT_CIDRS, .flags = OPT_REQUIRED, .min = 1,
	  FIELD(struct config_proxy_in, from), .offset2 = offsetof(struct config_proxy_in, n_from) },
	{ .name = "timeout", .type = OPT_DURATION, .min = 100, .max = 60 * MS_PER_S,
	  .def = 3 * MS_PER_S, FIELD(struct config_proxy_in, timeout_ms) },
	{ .name = NULL },
};

static const struct section proxy_in_section = { .options = proxy_in_options };

static int finish_health(struct loader *ld, const config_setting_t *s, void *base);
static const struct option health_options[] = {
	{ .name = "interval", .type = OPT_DURATION, .min = 100, .max = 3600 * MS_PER_S,
	  .def = 5 * MS_PER_S, FIELD(struct config_health, interval_ms) },
	{ .name = "timeout", .type = OPT_DURATION, .min = 10, .max = 3600 * MS_PER_S,
	  .def = 2 * MS_PER_S, FIELD(struct config_health, timeout_ms) },
	{ .name = "fall", .type = OPT_UINT, .min = 1, .max = 100, .def = 3,
	  FIELD(struct config_health, fall) },
	{ .name = "rise", .type = OPT_UINT, .min = 1, .max = 100, .def = 2,
	  FIELD(struct config_health, rise) },
	{ .name = NULL },
};

static const struct section health_section = { .options = health_options,
					       .finish = finish_health };

static const struct option target_options[] = {
	{ .name = "name", .type = OPT_NAME, .flags = OPT_REQUIRED, .min = 1, .max = 64,
	  FIELD(struct config_target, name) },
	{ .name = "upstream", .type = OPT_ADDRS, .flags = OPT_REQUIRED, .min = 1,
	  FIELD(struct config_target, upstream),
	  .offset2 = offsetof(struct config_target, n_upstream) },
	{ .name = "users", .type = OPT_STRINGS, .min = 1, .max = 255,
	  FIELD(struct config_target, users), .offset2 = offsetof(struct config_target, n_users) },
	{ .name = "groups", .type = OPT_STRINGS, .min = 1, .max = 64,
	  FIELD(struct config_target, groups), .offset2 = offsetof(struct config_target, n_groups) },
	{ .name = NULL },
};

static const struct section target_section = { .options = target_options };

static const struct option pass_options[] = {
	{ .name = "from_gateway", .type = OPT_NAME, .flags = OPT_REQUIRED, .min = 1, .max = 64,
	  FIELD(struct config_pass, from_gateway) },
	{ .name = "duration", .type = OPT_DURATION, .min = 1 * MS_PER_S, .max = 86400 * MS_PER_S,
	  .def = 600 * MS_PER_S, FIELD(struct config_pass, duration_ms) },
	{ .name = NULL },
};

static const struct section pass_section = { .options = pass_options };

static const struct option gateway_options[] = {
	{ .name = "name", .type = OPT_NAME, .flags = OPT_REQUIRED, .min = 1,
	  .max = CONFIG_MAX_NAME, FIELD(struct config_gateway, name) },
	{ .name = "listen", .type = OPT_ADDRS, .flags = OPT_PASSIVE, .min = 0,
	  FIELD(struct config_gateway, listen), .offset2 = offsetof(struct config_gateway, n_listen) },
	{ .name = "upstream", .type = OPT_ADDRS, .flags = OPT_REQUIRED, .min = 1,
	  FIELD(struct config_gateway, upstream),
	  .offset2 = offsetof(struct config_gateway, n_upstream) },
	{ .name = "authenticate", .type = OPT_ENUM, .names = authenticate_modes,
	  .def = CONFIG_AUTHENTICATE_YES, FIELD(struct config_gateway, authenticate_mode) },
	{ .name = "pass", .type = OPT_GROUP, .offset = offsetof(struct config_gateway, pass),
	  .sub = &pass_section, .flags = OPT_OPTIONAL,
	  .offset2 = offsetof(struct config_gateway, pass.enabled) },
	{ .name = "auth", .type = OPT_ENUM, .names = auth_backends, .def = CONFIG_AUTH_FILE,
	  FIELD(struct config_gateway, auth) },
	{ .name = "pam_service", .type = OPT_STRING, .min = 1, .max = 64,
	  .def_str = "sockgate", FIELD(struct config_gateway, pam_service) },
	{ .name = "pam_config_dir", .type = OPT_PATH, .min = 1, .max = CONFIG_MAX_PATH - 1,
	  FIELD(struct config_gateway, pam_config_dir),
	  .offset2 = offsetof(struct config_gateway, pam_config_dir_path) },
	{ .name = "credentials", .type = OPT_PATH, .min = 1,
	  .max = CONFIG_MAX_PATH - 1, FIELD(struct config_gateway, credentials),
	  .offset2 = offsetof(struct config_gateway, credentials_path) },
	{ .name = "login", .type = OPT_GROUP, .offset = offsetof(struct config_gateway, login),
	  .sub = &login_section },
	{ .name = "timeouts", .type = OPT_GROUP, .offset = 0, .sub = &timeouts_section },
	{ .name = "max_sessions", .type = OPT_UINT, .min = 1, .max = 1000000, .def = 9000,
	  FIELD(struct config_gateway, max_sessions) },
	{ .name = "max_sessions_per_user", .type = OPT_UINT, .min = 0, .max = 1000000, .def = 0,
	  FIELD(struct config_gateway, max_sessions_per_user) },
	{ .name = "proxy_protocol", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config_gateway, proxy_protocol),
	  .offset2 = offsetof(struct config_gateway, proxy_protocol.enabled),
	  .sub = &proxy_in_section },
	{ .name = "upstream_proxy_protocol", .type = OPT_ENUM, .names = proxy_out_versions,
	  .def = CONFIG_PROXY_OUT_NONE, FIELD(struct config_gateway, upstream_proxy_protocol) },
	{ .name = "upstream_proxy_protocol_user_tlv", .type = OPT_UINT, .min = 0xE0, .max = 0xEC,
	  .def = 0xE0, FIELD(struct config_gateway, upstream_proxy_protocol_user_tlv) },
	{ .name = "upstream_proxy_protocol_key", .type = OPT_PATH, .min = 1,
	  .max = CONFIG_MAX_PATH - 1, FIELD(struct config_gateway, upstream_proxy_protocol_key),
	  .offset2 = offsetof(struct config_gateway, upstream_proxy_protocol_key_path) },
	{ .name = "balance", .type = OPT_ENUM, .names = balance_modes, .def = CONFIG_BALANCE_FIRST,
	  FIELD(struct config_gateway, balance) },
	{ .name = "health", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config_gateway, health),
	  .offset2 = offsetof(struct config_gateway, health.enabled), .sub = &health_section },
	{ .name = "targets", .type = OPT_GROUPS, .min = 1, FIELD(struct config_gateway, targets),
	  .offset2 = offsetof(struct config_gateway, n_targets),
	  .elem_size = sizeof(struct config_target), .sub = &target_section },
	{ .name = "record", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config_gateway, record),
	  .offset2 = offsetof(struct config_gateway, record.enabled), .sub = &record_section },
	{ .name = "allow", .type = OPT_CIDRS, .min = 1, FIELD(struct config_gateway, allow),
	  .offset2 = offsetof(struct config_gateway, n_allow) },
	{ .name = "deny", .type = OPT_CIDRS, .min = 1, FIELD(struct config_gateway, deny),
	  .offset2 = offsetof(struct config_gateway, n_deny) },
	{ .name = "tls", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config_gateway, tls),
	  .offset2 = offsetof(struct config_gateway, tls.enabled), .sub = &tls_section },
	{ .name = "upstream_tls", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config_gateway, upstream_tls),
	  .offset2 = offsetof(struct config_gateway, upstream_tls.enabled),
	  .sub = &upstream_tls_section },
	{ .name = NULL },
};

static const struct section gateway_section = {
	.options = gateway_options,
	.finish = finish_gateway,
};

static const struct option startups_options[] = {
	{ .name = "begin", .type = OPT_UINT, .min = 1, .max = 1000000, .def = 6000,
	  FIELD(struct config_limits, startups_begin) },
	{ .name = "rate", .type = OPT_UINT, .min = 0, .max = 100, .def = 30,
	  FIELD(struct config_limits, startups_rate) },
	{ .name = "full", .type = OPT_UINT, .min = 1, .max = 1000000, .def = 8000,
	  FIELD(struct config_limits, startups_full) },
	{ .name = NULL },
};

static const struct section startups_section = { .options = startups_options };

static const struct option limits_options[] = {
	{ .name = "auth_queue", .type = OPT_UINT, .min = 1, .max = 100000, .def = 256,
	  FIELD(struct config_limits, auth_queue) },
	{ .name = "pam_threads", .type = OPT_UINT, .min = 1, .max = 1024, .def = 16,
	  FIELD(struct config_limits, pam_threads) },
	{ .name = "startups", .type = OPT_GROUP, .offset = 0, .sub = &startups_section },
	{ .name = "per_source_startups", .type = OPT_UINT, .min = 0, .max = 1000000, .def = 10,
	  FIELD(struct config_limits, per_source_startups) },
	{ .name = NULL },
};

static const struct option penalties_options[] = {
	{ .name = "enabled", .type = OPT_BOOL, .def = 1, FIELD(struct config_penalties, enabled) },
	{ .name = "authfail", .type = OPT_DURATION, .min = 0, .max = 86400 * MS_PER_S,
	  .def = 5 * MS_PER_S, FIELD(struct config_penalties, authfail_ms) },
	{ .name = "grace_exceeded", .type = OPT_DURATION, .min = 0, .max = 86400 * MS_PER_S,
	  .def = 10 * MS_PER_S, FIELD(struct config_penalties, grace_ms) },
	{ .name = "noauth", .type = OPT_DURATION, .min = 0, .max = 86400 * MS_PER_S,
	  .def = 1 * MS_PER_S, FIELD(struct config_penalties, noauth_ms) },
	{ .name = "min", .type = OPT_DURATION, .min = 0, .max = 86400 * MS_PER_S,
	  .def = 15 * MS_PER_S, FIELD(struct config_penalties, min_ms) },
	{ .name = "max", .type = OPT_DURATION, .min = 0, .max = 7 * 86400 * MS_PER_S,
	  .def = 600 * MS_PER_S, FIELD(struct config_penalties, max_ms) },
	{ .name = "ipv4_netblock", .type = OPT_UINT, .min = 1, .max = 32, .def = 32,
	  FIELD(struct config_penalties, ipv4_bits) },
	{ .name = "ipv6_netblock", .type = OPT_UINT, .min = 1, .max = 128, .def = 64,
	  FIELD(struct config_penalties, ipv6_bits) },
	{ .name = "max_sources", .type = OPT_UINT, .min = 16, .max = 10000000, .def = 65536,
	  FIELD(struct config_penalties, max_sources) },
	{ .name = "exempt", .type = OPT_CIDRS, .min = 0, FIELD(struct config_penalties, exempt),
	  .offset2 = offsetof(struct config_penalties, n_exempt) },
	{ .name = NULL },
};

static int finish_limits(struct loader *ld, const config_setting_t *s, void *base);
static const struct section limits_section = { .options = limits_options,
					       .finish = finish_limits };
static int finish_penalties(struct loader *ld, const config_setting_t *s, void *base);
static const struct section penalties_section = { .options = penalties_options,
						  .finish = finish_penalties };

static const struct option log_limits_options[] = {
	{ .name = "per_source", .type = OPT_UINT, .min = 0, .max = 1000000, .def = 5,
	  FIELD(struct config_log_limits, per_source) },
	{ .name = "per_second", .type = OPT_UINT, .min = 1, .max = 1000000, .def = 20,
	  FIELD(struct config_log_limits, per_second) },
	{ .name = "interval", .type = OPT_DURATION, .min = 1 * MS_PER_S, .max = 3600 * MS_PER_S,
	  .def = 10 * MS_PER_S, FIELD(struct config_log_limits, interval_ms) },
	{ .name = NULL },
};

static const struct section log_limits_section = { .options = log_limits_options };

static const struct option control_options[] = {
	{ .name = "socket", .type = OPT_STRING, .min = 1, .max = 107,
	  .def_str = "/run/sockgate/control", FIELD(struct config_control, socket) },
	{ .name = "group", .type = OPT_NAME, .min = 1, .max = 32,
	  FIELD(struct config_control, group) },
	{ .name = NULL },
};

static const struct section control_section = { .options = control_options };

static const struct option metrics_options[] = {
	{ .name = "listen", .type = OPT_ADDRS, .flags = OPT_REQUIRED | OPT_PASSIVE, .min = 1,
	  FIELD(struct config_metrics, listen), .offset2 = offsetof(struct config_metrics, n_listen) },
	{ .name = NULL },
};

static const struct section metrics_section = { .options = metrics_options };



static const struct option top_options[] = {
	{ .name = "workers", .type = OPT_AUTO_UINT, .min = 1, .max = 256, .def = 0,
	  FIELD(struct config, workers) },
	{ .name = "auth_threads", .type = OPT_AUTO_UINT, .min = 1, .max = 64, .def = 0,
	  FIELD(struct config, auth_threads) },
	{ .name = "auth_threads_relaying", .type = OPT_AUTO_UINT, .min = 1, .max = 64, .def = 0,
	  FIELD(struct config, auth_threads_relaying) },
	{ .name = "relay_buffer", .type = OPT_UINT, .min = 4096, .max = 16 << 20, .def = 256 << 10,
	  FIELD(struct config, relay_buffer) },
	{ .name = "revoke_on_reload", .type = OPT_BOOL, .def = 0,
	  FIELD(struct config, revoke_on_reload) },
	{ .name = "limits", .type = OPT_GROUP, .offset = offsetof(struct config, limits),
	  .sub = &limits_section },
	{ .name = "penalties", .type = OPT_GROUP, .offset = offsetof(struct config, penalties),
	  .sub = &penalties_section },
	{ .name = "log_limits", .type = OPT_GROUP, .offset = offsetof(struct config, log_limits),
	  .sub = &log_limits_section },
	{ .name = "control", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config, control),
	  .offset2 = offsetof(struct config, control.enabled), .sub = &control_section },
	{ .name = "metrics", .type = OPT_GROUP, .flags = OPT_OPTIONAL,
	  .offset = offsetof(struct config, metrics),
	  .offset2 = offsetof(struct config, metrics.enabled), .sub = &metrics_section },
	{ .name = "gateways", .type = OPT_GROUPS, .flags = OPT_REQUIRED, .min = 1,
	  FIELD(struct config, gateways), .offset2 = offsetof(struct config, n_gateways),
	  .elem_size = sizeof(struct config_gateway), .sub = &gateway_section },
	{ .name = NULL },
};

static int finish_top(struct loader *ld, const config_setting_t *s, void *base);
static const struct section top_section = { .options = top_options, .finish = finish_top };
/* clang-format on */

/* ---- messages ---- */

/* "gateways.[0].login.max_attempts", libconfig's own path syntax. */
static void setting_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *parent = config_setting_parent(s);
	size_t n;

	buf[0] = '\0';
	if (parent == NULL)
		return;
	setting_path(parent, buf, len);
	n = strlen(buf);
	if (n > 0 && n + 1 < len)
		buf[n++] = '.';
	if (config_setting_name(s) != NULL)
		snprintf(buf + n, len - n, "%s", config_setting_name(s));
	else
		snprintf(buf + n, len - n, "[%d]", config_setting_index(s));
}

static int cf_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "FILE:LINE: PATH: message". The root has no line of its own; line 1 stands
 * for "the file as a whole". */
static int cf_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	char path[256], msg[ERRBUF_LEN];
	unsigned line = config_setting_source_line(s);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	setting_path(s, path, sizeof(path));
	return errbuf_set(ld->err, "%s:%u: %s%s%s", ld->name, line > 0 ? line : 1, path,
			  path[0] != '\0' ? ": " : "", msg);
}

static int cf_oom(struct loader *ld, const config_setting_t *s)
{
	return cf_error(ld, s, "out of memory");
}

static const char *type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number with a fraction";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	default:
		return "something else";
	}
}

/* Seconds for messages, from milliseconds: "30", "0.5". */
static void format_seconds(long long ms, char *buf, size_t len)
{
	if (ms % MS_PER_S == 0) {
		snprintf(buf, len, "%lld", ms / MS_PER_S);
		return;
	}
	snprintf(buf, len, "%lld.%03lld", ms / MS_PER_S, ms % MS_PER_S);
	for (size_t n = strlen(buf); n > 0 && buf[n - 1] == '0'; n--)
		buf[n - 1] = '\0';
}

/* ---- storing values ---- */

static void *field_at(void *base, size_t offset)
{
	return (char *)base + offset;
}

/* Numbers go into unsigned or uint64_t fields; the row's size says which. */
static int store_uint(struct loader *ld, const config_setting_t *s, const struct option *o,
		      void *base, unsigned long long v)
{
	void *field = field_at(base, o->offset);

	if (o->size == sizeof(uint64_t)) {
		*(uint64_t *)field = v;
		return 0;
	}
	if (o->size == sizeof(unsigned) && v <= UINT_MAX) {
		*(unsigned *)field = (unsigned)v;
		return 0;
	}
	return cf_error(ld, s, "internal error: %llu does not fit the field", v);
}

static int get_integer(const config_setting_t *s, long long *v)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		*v = config_setting_get_int(s);
		return 0;
	case CONFIG_TYPE_INT64:
		*v = config_setting_get_int64(s);
		return 0;
	default:
		return -1;
	}
}

static int load_uint(struct loader *ld, const struct option *o, const config_setting_t *s,
		     void *base)
{
	long long v;

	if (get_integer(s, &v) < 0)
		return cf_error(ld, s, "must be an integer %lld..%lld, not %s", o->min, o->max,
				type_name(s));
	if (v < o->min || v > o->max)
		return cf_error(ld, s, "%lld is out of range %lld..%lld", v, o->min, o->max);
	return store_uint(ld, s, o, base, (unsigned long long)v);
}

static int load_auto_uint(struct loader *ld, const struct option *o, const config_setting_t *s,
			  void *base)
{
	const char *str;
	long long v;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		str = config_setting_get_string(s);
		if (strcmp(str, "auto") != 0)
			return cf_error(ld, s,
					"must be \"auto\" or an integer %lld..%lld, not \"%.64s\"",
					o->min, o->max, str);
		return store_uint(ld, s, o, base, 0);
	}
	if (get_integer(s, &v) < 0)
		return cf_error(ld, s, "must be \"auto\" or an integer %lld..%lld, not %s", o->min,
				o->max, type_name(s));
	if (v != 0 && (v < o->min || v > o->max))
		return cf_error(ld, s, "%lld is out of range %lld..%lld (or 0 or \"auto\")", v,
				o->min, o->max);
	return store_uint(ld, s, o, base, (unsigned long long)v);
}

/* Durations are written in seconds; a fraction allows sub-second values (tests
 * use grace_time = 0.2). Stored rounded to the millisecond. */
static int load_duration(struct loader *ld, const struct option *o, const config_setting_t *s,
			 void *base)
{
	char lo[32], hi[32], given[32];
	unsigned long long rounded;
	long long iv;
	double sec, ms;

	format_seconds(o->min, lo, sizeof(lo));
	format_seconds(o->max, hi, sizeof(hi));
	if (get_integer(s, &iv) == 0) {
		sec = (double)iv;
		snprintf(given, sizeof(given), "%lld", iv);
	} else if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
		sec = config_setting_get_float(s);
		snprintf(given, sizeof(given), "%g", sec);
	} else {
		return cf_error(ld, s, "must be a number of seconds %s..%s, not %s", lo, hi,
				type_name(s));
	}
	ms = sec * (double)MS_PER_S;
	/* Durations are never negative, so the bounds check also keeps ms >= 0 for
	 * the rounding below (done by hand: no libm for one llround). */
	if (!isfinite(ms) || ms < (double)o->min || ms > (double)o->max || ms < 0)
		return cf_error(ld, s, "%s is out of range %s..%s seconds", given, lo, hi);
	rounded = (unsigned long long)(ms + 0.5);
	if (ms > 0 && rounded == 0)
		return cf_error(ld, s,
				"%s seconds is below the resolution of 0.001 (use 0 for none)",
				given);
	return store_uint(ld, s, o, base, rounded);
}

/* Spelled out rather than isalnum(), which follows the locale. */
static int name_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static int load_string(struct loader *ld, const struct option *o, const config_setting_t *s,
		       void *base)
{
	char **field = field_at(base, o->offset);
	const char *v;
	size_t len;
	char *copy;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cf_error(ld, s, "must be a string, not %s", type_name(s));
	v = config_setting_get_string(s);
	len = strlen(v);
	if (len == 0 && o->min > 0)
		return cf_error(ld, s, "must not be empty");
	if ((long long)len < o->min || (long long)len > o->max)
		return cf_error(ld, s, "is %zu bytes long; %lld..%lld allowed", len, o->min,
				o->max);
	if (o->type == OPT_NAME) {
		for (const char *p = v; *p != '\0'; p++) {
			if (!name_char_ok((unsigned char)*p))
				return cf_error(ld, s,
						"\"%.64s\" has a character (0x%02x) that is not "
						"allowed; use A-Z a-z 0-9 _ . -",
						v, (unsigned char)*p);
		}
	}
	copy = strdup(v);
	if (copy == NULL)
		return cf_oom(ld, s);
	free(*field);
	*field = copy;
	return 0;
}

static int set_default_string(struct loader *ld, const struct option *o,
			      const config_setting_t *where, void *base)
{
	char **field = field_at(base, o->offset);

	if (o->def_str == NULL)
		return 0;
	*field = strdup(o->def_str);
	return *field != NULL ? 0 : cf_oom(ld, where);
}

static int set_default_number(struct loader *ld, const struct option *o,
			      const config_setting_t *where, void *base)
{
	return store_uint(ld, where, o, base, (unsigned long long)o->def);
}

static void release_string(const struct option *o, void *base)
{
	char **field = field_at(base, o->offset);

	free(*field);
	*field = NULL;
}

/* Relative paths follow systemd's LoadCredential= when it is in use, else the
 * configuration file, never the daemon's working directory. */
static int load_path(struct loader *ld, const struct option *o, const config_setting_t *s,
		     void *base)
{
	char **resolved = field_at(base, o->offset2);
	const char *v, *dir;
	size_t len;

	if (load_string(ld, o, s, base) < 0)
		return -1;
	v = *(char **)field_at(base, o->offset);
	free(*resolved);
	if (v[0] == '/') {
		*resolved = strdup(v);
	} else {
		dir = ld->cred_dir != NULL ? ld->cred_dir : ld->dir;
		len = strlen(dir) + 1 + strlen(v) + 1;
		*resolved = malloc(len);
		if (*resolved != NULL)
			snprintf(*resolved, len, "%s%s%s", dir,
				 dir[strlen(dir) - 1] == '/' ? "" : "/", v);
	}
	return *resolved != NULL ? 0 : cf_oom(ld, s);
}

static void release_path(const struct option *o, void *base)
{
	char **resolved = field_at(base, o->offset2);

	release_string(o, base);
	free(*resolved);
	*resolved = NULL;
}

/* ---- addresses ---- */

/* Two listen addresses that bind() could not both get: the same address, or the
 * same port with a wildcard on either side (IPv6 sockets are V6ONLY, so the
 * families never collide). Port 0 asks for a fresh port, so it never clashes. */
static int listen_clash(const struct config_addr *a, const struct config_addr *b)
{
	unsigned port = net_sockaddr_port((const struct sockaddr *)&a->ss);

	if (a->ss.ss_family != b->ss.ss_family || port == 0 ||
	    port != net_sockaddr_port((const struct sockaddr *)&b->ss))
		return 0;
	return net_sockaddr_is_any((const struct sockaddr *)&a->ss) ||
	       net_sockaddr_is_any((const struct sockaddr *)&b->ss) ||
	       net_sockaddr_equal((const struct sockaddr *)&a->ss, (const struct sockaddr *)&b->ss);
}

static int append_addr(struct loader *ld, const config_setting_t *s, struct config_addr **arr,
		       size_t *n, const char *spec, const struct addrinfo *ai)
{
	struct config_addr *grown, *a;

	if (*n >= SIZE_MAX / sizeof(**arr) - 1)
		return cf_oom(ld, s);
	grown = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (grown == NULL)
		return cf_oom(ld, s);
	*arr = grown;
	a = &grown[*n];
	memset(a, 0, sizeof(*a));
	memcpy(&a->ss, ai->ai_addr, ai->ai_addrlen);
	a->len = ai->ai_addrlen;
	snprintf(a->text, sizeof(a->text), "%s", spec);
	net_format_addr(ai->ai_addr, a->resolved, sizeof(a->resolved));
	(*n)++;
	return 0;
}

/* Resolves one "HOST:PORT" now, so the event loop never waits for DNS; a name
 * with several addresses adds each, in resolver order. */
static int load_one_addr(struct loader *ld, const struct option *o, const config_setting_t *s,
			 void *base)
{
	struct config_addr **arr = field_at(base, o->offset);
	size_t *n = field_at(base, o->offset2), first = *n;
	int passive = (o->flags & OPT_PASSIVE) != 0;
	int resolve_flags = passive ? NET_RESOLVE_PASSIVE : 0;
	char host[NET_HOSTLEN], port[NET_PORTLEN];
	struct addrinfo *res = NULL, *ai;
	struct errbuf why;
	const char *spec;
	int rc = -1;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cf_error(ld, s, "must be a string \"HOST:PORT\", not %s", type_name(s));
	spec = config_setting_get_string(s);
	if (strlen(spec) >= sizeof((*arr)->text))
		return cf_error(ld, s, "\"%.64s...\" is too long", spec);
	/* net's messages already say which form or range was expected. */
	if (net_split_hostport(spec, passive, host, port, &why) < 0)
		return cf_error(ld, s, "%s", why.msg);
	if (!passive && strcmp(host, "*") == 0)
		return cf_error(ld, s, "\"%s\": '*' (any address) is only for listen", spec);
	if (ld->flags & CONFIG_PARSE_NUMERIC_HOSTS)
		resolve_flags |= NET_RESOLVE_NUMERIC;
	if (net_resolve(host, port, resolve_flags, &res, &why) < 0)
		return cf_error(ld, s, "%s", why.msg);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int dup = 0;

		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof((*arr)->ss))
			continue;
		/* /etc/hosts may repeat a line; that is no reason to refuse it. */
		for (size_t i = first; i < *n && !dup; i++)
			dup = net_sockaddr_equal((const struct sockaddr *)&(*arr)[i].ss,
						 ai->ai_addr);
		if (!dup && append_addr(ld, s, arr, n, spec, ai) < 0)
			goto out;
	}
	if (*n == first) {
		cf_error(ld, s, "\"%s\" resolves to no IPv4 or IPv6 address", spec);
		goto out;
	}
	rc = 0;
out:
	freeaddrinfo(res);
	return rc;
}

typedef int load_one_fn(struct loader *ld, const struct option *o, const config_setting_t *s,
			void *base);

/* A setting that is one string, or a list (or array) of them: each goes to
 * load_one. form names one element in messages ("\"HOST:PORT\""), as does
 * the noun (with "es" for more than one). */
static int load_list(struct loader *ld, const struct option *o, const config_setting_t *s,
		     void *base, load_one_fn *load_one, const char *form, const char *noun)
{
	int n;

	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return load_one(ld, o, s, base);
	if (config_setting_type(s) != CONFIG_TYPE_LIST &&
	    config_setting_type(s) != CONFIG_TYPE_ARRAY)
		return cf_error(ld, s, "must be a string %s or a list of them, not %s", form,
				type_name(s));
	n = config_setting_length(s);
	if (n < o->min)
		return cf_error(ld, s, "is empty; at least %lld %s%s required", o->min, noun,
				o->min == 1 ? " is" : "es are");
	for (int i = 0; i < n; i++)
		if (load_one(ld, o, config_setting_get_elem(s, (unsigned)i), base) < 0)
			return -1;
	return 0;
}

static int load_addrs(struct loader *ld, const struct option *o, const config_setting_t *s,
		      void *base)
{
	return load_list(ld, o, s, base, load_one_addr, "\"HOST:PORT\"", "address");
}

static void release_addrs(const struct option *o, void *base)
{
	struct config_addr **arr = field_at(base, o->offset);

	free(*arr);
	*arr = NULL;
	*(size_t *)field_at(base, o->offset2) = 0;
}

static int load_one_string(struct loader *ld, const struct option *o, const config_setting_t *s,
			   void *base)
{
	char ***arr = field_at(base, o->offset), **grown;
	size_t *n = field_at(base, o->offset2);
	const char *v;
	size_t len;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cf_error(ld, s, "must be a string, not %s", type_name(s));
	v = config_setting_get_string(s);
	len = strlen(v);
	if ((long long)len < o->min || (long long)len > o->max)
		return cf_error(ld, s, "\"%.64s\" is %zu bytes long; %lld..%lld allowed", v, len,
				o->min, o->max);
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*arr)[i], v) == 0)
			return cf_error(ld, s, "\"%.64s\" is listed twice", v);
	grown = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (grown == NULL)
		return cf_oom(ld, s);
	*arr = grown;
	(*arr)[*n] = strdup(v);
	if ((*arr)[*n] == NULL)
		return cf_oom(ld, s);
	(*n)++;
	return 0;
}

static int load_strings(struct loader *ld, const struct option *o, const config_setting_t *s,
			void *base)
{
	return load_list(ld, o, s, base, load_one_string, "", "name");
}

static void release_strings(const struct option *o, void *base)
{
	char ***arr = field_at(base, o->offset);
	size_t *n = field_at(base, o->offset2);

	for (size_t i = 0; i < *n; i++)
		free((*arr)[i]);
	free(*arr);
	*arr = NULL;
	*n = 0;
}

/* ---- booleans and address blocks ---- */

static int load_bool(struct loader *ld, const struct option *o, const config_setting_t *s,
		     void *base)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cf_error(ld, s, "must be true or false, not %s", type_name(s));
	*(bool *)field_at(base, o->offset) = config_setting_get_bool(s) != 0;
	return 0;
}

static int load_enum(struct loader *ld, const struct option *o, const config_setting_t *s,
		     void *base)
{
	char allowed[256] = "";
	const char *v;

	for (unsigned i = 0; o->names[i] != NULL; i++)
		snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s\"%s\"",
			 i == 0                    ? ""
			 : o->names[i + 1] == NULL ? " or "
						   : ", ",
			 o->names[i]);
	if (config_setting_type(s) == CONFIG_TYPE_BOOL)
		v = config_setting_get_bool(s) ? "true" : "false";
	else if (config_setting_type(s) == CONFIG_TYPE_STRING)
		v = config_setting_get_string(s);
	else
		return cf_error(ld, s, "must be %s, not %s", allowed, type_name(s));
	for (unsigned i = 0; o->names[i] != NULL; i++)
		if (strcmp(v, o->names[i]) == 0)
			return store_uint(ld, s, o, base, i);
	return cf_error(ld, s, "must be %s, not \"%.64s\"", allowed, v);
}

static int set_default_bool(struct loader *ld, const struct option *o,
			    const config_setting_t *where, void *base)
{
	(void)ld;
	(void)where;
	*(bool *)field_at(base, o->offset) = o->def != 0;
	return 0;
}

static int load_one_cidr(struct loader *ld, const struct option *o, const config_setting_t *s,
			 void *base)
{
	struct net_cidr **arr = field_at(base, o->offset), c, *grown;
	size_t *n = field_at(base, o->offset2);
	struct errbuf why;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cf_error(ld, s, "must be a string \"ADDRESS/BITS\", not %s", type_name(s));
	if (net_parse_cidr(config_setting_get_string(s), &c, &why) < 0)
		return cf_error(ld, s, "%s", why.msg);
	grown = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (grown == NULL)
		return cf_oom(ld, s);
	*arr = grown;
	(*arr)[(*n)++] = c;
	return 0;
}

static int load_cidrs(struct loader *ld, const struct option *o, const config_setting_t *s,
		      void *base)
{
	return load_list(ld, o, s, base, load_one_cidr, "\"ADDRESS/BITS\"", "address");
}

static void release_cidrs(const struct option *o, void *base)
{
	struct net_cidr **arr = field_at(base, o->offset);

	free(*arr);
	*arr = NULL;
	*(size_t *)field_at(base, o->offset2) = 0;
}

/* The early-drop range must be a range. */
static int finish_limits(struct loader *ld, const config_setting_t *s, void *base)
{
	const struct config_limits *l = base;

	if (l->startups_full < l->startups_begin)
		return cf_error(ld, s, "startups: full (%u) is below begin (%u)", l->startups_full,
				l->startups_begin);
	return 0;
}

/* A cap below the threshold would never let a penalty start. */
static int finish_penalties(struct loader *ld, const config_setting_t *s, void *base)
{
	const struct config_penalties *p = base;

	if (p->max_ms < p->min_ms)
		return cf_error(ld, s,
				"max (%u ms) is below min (%u ms): no source "
				"would ever be refused",
				p->max_ms, p->min_ms);
	return 0;
}

/* A client certificate is checked against client_ca: one without the other
 * means nothing. */
static int finish_tls(struct loader *ld, const config_setting_t *s, void *base)
{
	const struct config_tls *t = base;

	if (t->verify_client != CONFIG_VERIFY_NONE && t->client_ca == NULL)
		return cf_error(ld, s,
				"verify_client = \"%s\" needs client_ca, the CAs that "
				"sign the clients' certificates",
				verify_modes[t->verify_client]);
	if (t->client_ca != NULL && t->verify_client == CONFIG_VERIFY_NONE)
		return cf_error(ld, s,
				"client_ca is set but verify_client is \"none\": set it to "
				"\"optional\" or \"required\"");
	return 0;
}

static int finish_upstream_tls(struct loader *ld, const config_setting_t *s, void *base)
{
	const struct config_upstream_tls *t = base;

	if ((t->certificate == NULL) != (t->key == NULL))
		return cf_error(ld, s, "a client certificate needs both certificate and key");
	return 0;
}

/* ---- groups ---- */

static int load_section(struct loader *ld, const struct section *sec, const config_setting_t *group,
			const config_setting_t *where, const char *prefix, void *base);
static void release_section(const struct section *sec, void *base);

static int load_group(struct loader *ld, const struct option *o, const config_setting_t *s,
		      void *base)
{
	if (!config_setting_is_group(s))
		return cf_error(ld, s, "must be a group { ... }, not %s", type_name(s));
	if (o->flags & OPT_OPTIONAL)
		*(bool *)field_at(base, o->offset2) = true;
	return load_section(ld, o->sub, s, s, NULL, field_at(base, o->offset));
}

/* An absent group still gets its defaults (and reports its required rows). */
static int set_default_group(struct loader *ld, const struct option *o,
			     const config_setting_t *where, void *base)
{
	if (o->flags & OPT_OPTIONAL)
		return 0; /* off: nothing to default */
	return load_section(ld, o->sub, NULL, where, o->name, field_at(base, o->offset));
}

static void release_group(const struct option *o, void *base)
{
	release_section(o->sub, field_at(base, o->offset));
}

static int load_groups(struct loader *ld, const struct option *o, const config_setting_t *s,
		       void *base)
{
	void **arr = field_at(base, o->offset);
	size_t *count = field_at(base, o->offset2);
	int n;

	if (!config_setting_is_list(s))
		return cf_error(ld, s, "must be a list of groups: %s = ( { ... }, { ... } );",
				o->name);
	n = config_setting_length(s);
	if (n < o->min)
		return cf_error(ld, s, "is empty; at least %lld entr%s required", o->min,
				o->min == 1 ? "y is" : "ies are");
	if (n == 0)
		return 0;
	/* Count set at once: a failure below leaves a zeroed tail the release frees. */
	*arr = calloc((size_t)n, o->elem_size);
	if (*arr == NULL)
		return cf_oom(ld, s);
	*count = (size_t)n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		void *elem = (char *)*arr + (size_t)i * o->elem_size;

		if (!config_setting_is_group(e))
			return cf_error(ld, e, "must be a group { ... }, not %s", type_name(e));
		if (load_section(ld, o->sub, e, e, NULL, elem) < 0)
			return -1;
	}
	return 0;
}

static void release_groups(const struct option *o, void *base)
{
	void **arr = field_at(base, o->offset);
	size_t *count = field_at(base, o->offset2);

	for (size_t i = 0; i < *count; i++)
		release_section(o->sub, (char *)*arr + i * o->elem_size);
	free(*arr);
	*arr = NULL;
	*count = 0;
}

/* ---- the handlers, by type ---- */

struct option_handler {
	const char *what; /* for "missing required setting 'x' (what)" */
	int (*load)(struct loader *ld, const struct option *o, const config_setting_t *s,
		    void *base);
	int (*set_default)(struct loader *ld, const struct option *o, const config_setting_t *where,
			   void *base);
	void (*release)(const struct option *o, void *base);
};

static const struct option_handler handlers[OPT_N_TYPES] = {
	/* clang-format off */
	[OPT_UINT] = { "an integer", load_uint, set_default_number, NULL },
	[OPT_AUTO_UINT] = { "\"auto\" or an integer", load_auto_uint, set_default_number, NULL },
	[OPT_DURATION] = { "seconds", load_duration, set_default_number, NULL },
	[OPT_STRING] = { "a string", load_string, set_default_string, release_string },
	[OPT_NAME] = { "a name of A-Z a-z 0-9 _ . -", load_string, set_default_string,
		       release_string },
	[OPT_PATH] = { "a file name", load_path, NULL, release_path },
	[OPT_ADDRS] = { "\"HOST:PORT\" or a list of them", load_addrs, NULL, release_addrs },
	[OPT_GROUP] = { "a group { ... }", load_group, set_default_group, release_group },
	[OPT_GROUPS] = { "a list of groups ( { ... } )", load_groups, NULL, release_groups },
	[OPT_BOOL] = { "true or false", load_bool, set_default_bool, NULL },
	[OPT_CIDRS] = { "\"ADDRESS/BITS\" or a list of them", load_cidrs, NULL, release_cidrs },
	[OPT_ENUM] = { "one of its names", load_enum, set_default_number, NULL },
	[OPT_STRINGS] = { "a string or a list of them", load_strings, NULL, release_strings },
	/* clang-format on */
};

static const struct option *find_option(const struct section *sec, const char *name)
{
	for (const struct option *o = sec->options; o->name != NULL; o++) {
		if (strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

/* Levenshtein distance, enough to turn "logn" into "did you mean 'login'". */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = tolower((unsigned char)a[i - 1]) !=
				      tolower((unsigned char)b[j - 1]);
			size_t best = diag + cost;

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* Typos must not pass silently: name the closest known setting, or list them. */
static int unknown_setting(struct loader *ld, const struct section *sec, const config_setting_t *s)
{
	const char *name = config_setting_name(s), *best = NULL;
	size_t best_d = 3, len = 0;
	char known[256] = "";

	for (const struct option *o = sec->options; o->name != NULL; o++) {
		size_t d = edit_distance(name, o->name);

		if (d < best_d) {
			best_d = d;
			best = o->name;
		}
		len += (size_t)snprintf(known + len, len < sizeof(known) ? sizeof(known) - len : 0,
					"%s%s", len > 0 ? ", " : "", o->name);
		if (len >= sizeof(known))
			len = sizeof(known);
	}
	if (best != NULL)
		return cf_error(ld, s, "unknown setting; did you mean '%s'?", best);
	return cf_error(ld, s, "unknown setting; known here: %s", known);
}

/* Loads group (NULL when absent: defaults only) into base. where is what
 * messages about missing rows point at; prefix names the absent group. */
static int load_section(struct loader *ld, const struct section *sec, const config_setting_t *group,
			const config_setting_t *where, const char *prefix, void *base)
{
	const struct option *o;

	/* In file order, so the first message is about the first problem. */
	for (int i = 0; group != NULL && i < config_setting_length(group); i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);

		o = find_option(sec, config_setting_name(s));
		if (o == NULL)
			return unknown_setting(ld, sec, s);
		if (handlers[o->type].load(ld, o, s, base) < 0)
			return -1;
	}
	for (o = sec->options; o->name != NULL; o++) {
		if (group != NULL && config_setting_get_member(group, o->name) != NULL)
			continue;
		if (o->flags & OPT_REQUIRED)
			return cf_error(ld, where, "missing required setting '%s%s%s' (%s)",
					prefix != NULL ? prefix : "", prefix != NULL ? "." : "",
					o->name, handlers[o->type].what);
		if (handlers[o->type].set_default != NULL &&
		    handlers[o->type].set_default(ld, o, where, base) < 0)
			return -1;
	}
	return sec->finish != NULL ? sec->finish(ld, where, base) : 0;
}

static void release_section(const struct section *sec, void *base)
{
	for (const struct option *o = sec->options; o->name != NULL; o++) {
		if (handlers[o->type].release != NULL)
			handlers[o->type].release(o, base);
	}
}

/* ---- checks across gateways ---- */

/* The list element a listen address came from, for a precise line. */
static const config_setting_t *listen_element(const config_setting_t *gw, const char *text)
{
	const config_setting_t *l = config_setting_get_member(gw, "listen");

	if (l == NULL || config_setting_type(l) == CONFIG_TYPE_STRING)
		return l != NULL ? l : gw;
	for (int i = 0; i < config_setting_length(l); i++) {
		const config_setting_t *e = config_setting_get_elem(l, (unsigned)i);

		if (strcmp(config_setting_get_string(e), text) == 0)
			return e;
	}
	return l;
}

static int check_listen(struct loader *ld, const config_setting_t *s,
			const struct config_gateway *gw, size_t idx)
{
	const struct config *cfg = ld->cfg;

	for (size_t j = 0; j < gw->n_listen; j++) {
		const struct config_addr *a = &gw->listen[j];

		for (size_t k = 0; k < j; k++) {
			if (listen_clash(a, &gw->listen[k]))
				return cf_error(
					ld, listen_element(s, a->text),
					"%s (\"%s\") clashes with %s (\"%s\") listed before",
					a->resolved, a->text, gw->listen[k].resolved,
					gw->listen[k].text);
		}
		for (size_t i = 0; i < idx; i++) {
			const struct config_gateway *o = &cfg->gateways[i];

			for (size_t k = 0; k < o->n_listen; k++) {
				if (!listen_clash(a, &o->listen[k]))
					continue;
				return cf_error(
					ld, listen_element(s, a->text),
					"%s (\"%s\") clashes with %s (\"%s\") of gateway "
					"\"%s\" (line %d); an address can serve one gateway only",
					a->resolved, a->text, o->listen[k].resolved,
					o->listen[k].text, o->name, o->line);
			}
		}
	}
	return 0;
}

/* Names and listen addresses are unique across gateways; earlier gateways are
 * complete when a later one is finished. */
/* A pass names a login gateway of the same file. */
static int finish_top(struct loader *ld, const config_setting_t *s, void *base)
{
	const struct config *cfg = base;

	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const struct config_gateway *g = &cfg->gateways[i], *from;

		if (g->authenticate_mode != CONFIG_AUTHENTICATE_PASS)
			continue;
		from = config_find_gateway(cfg, g->pass.from_gateway);
		if (from == NULL || from == g || !from->authenticate)
			return cf_error(ld, s,
					"gateway \"%s\": pass.from_gateway \"%s\" is not another "
					"gateway with a login",
					g->name, g->pass.from_gateway);
	}
	return 0;
}

static int finish_health(struct loader *ld, const config_setting_t *s, void *base)
{
	const struct config_health *h = base;

	if (h->timeout_ms > h->interval_ms)
		return cf_error(ld, s, "timeout (%u ms) is longer than interval (%u ms)",
				h->timeout_ms, h->interval_ms);
	return 0;
}

static int finish_gateway(struct loader *ld, const config_setting_t *s, void *base)
{
	struct config_gateway *gw = base;
	size_t idx = (size_t)(gw - ld->cfg->gateways);

	gw->line = (int)config_setting_source_line(s);
	gw->authenticate = gw->authenticate_mode == CONFIG_AUTHENTICATE_YES;
	if (gw->authenticate_mode == CONFIG_AUTHENTICATE_PASS && !gw->pass.enabled)
		return cf_error(ld, s,
				"authenticate = \"pass\" needs a pass group: pass = { "
				"from_gateway = \"NAME\"; duration = SECONDS; };");
	if (gw->pass.enabled && gw->authenticate_mode != CONFIG_AUTHENTICATE_PASS)
		return cf_error(ld, config_setting_get_member(s, "pass"),
				"a pass group needs authenticate = \"pass\"");
	if (gw->n_targets > 0 && gw->login.target == CONFIG_TARGET_NONE &&
	    gw->authenticate_mode == CONFIG_AUTHENTICATE_YES)
		return cf_error(ld, config_setting_get_member(s, "targets"),
				"targets need login.target = \"suffix\" or \"menu\" to be chosen");
	if (gw->login.target != CONFIG_TARGET_NONE && gw->n_targets == 0)
		return cf_error(ld, s, "login.target needs a targets list");
	for (size_t i = 0; i < gw->n_targets; i++) {
		const struct config_target *t = &gw->targets[i];

		if (t->n_users == 0 && t->n_groups == 0)
			return cf_error(ld, config_setting_get_member(s, "targets"),
					"target \"%s\" names no users and no groups: nobody "
					"could use it",
					t->name);
		for (size_t j = 0; j < i; j++)
			if (strcmp(gw->targets[j].name, t->name) == 0)
				return cf_error(ld, config_setting_get_member(s, "targets"),
						"two targets are named \"%s\"", t->name);
	}
	if (gw->upstream_proxy_protocol_key != NULL &&
	    gw->upstream_proxy_protocol != CONFIG_PROXY_OUT_V2)
		return cf_error(ld, config_setting_get_member(s, "upstream_proxy_protocol_key"),
				"a signature needs upstream_proxy_protocol = \"v2\"");
	/* Required unless the gateway only relays, or asks PAM. */
	if (gw->authenticate && gw->auth == CONFIG_AUTH_FILE && gw->credentials == NULL)
		return cf_error(ld, s, "missing required setting 'credentials' (a file name)%s",
				"; or auth = \"pam\"; or authenticate = false; for a relay "
				"without login");
	if (gw->auth == CONFIG_AUTH_PAM && gw->credentials != NULL)
		return cf_error(ld, config_setting_get_member(s, "credentials"),
				"a gateway with auth = \"pam\" takes its users from PAM, not "
				"from a credentials file: remove one of them");
	if (gw->auth == CONFIG_AUTH_PAM && gw->login.second_factor != CONFIG_FACTOR_NONE)
		return cf_error(ld, s,
				"login.second_factor applies to the credentials file; with auth "
				"= \"pam\", put the second factor in the PAM stack (pam_oath)");
	if (strchr(gw->pam_service, '/') != NULL || strcmp(gw->pam_service, ".") == 0 ||
	    strcmp(gw->pam_service, "..") == 0)
		return cf_error(ld, config_setting_get_member(s, "pam_service"),
				"pam_service is a service name, not a path");
	for (size_t i = 0; i < idx; i++) {
		const struct config_gateway *o = &ld->cfg->gateways[i];

		if (strcmp(o->name, gw->name) == 0)
			return cf_error(ld, config_setting_get_member(s, "name"),
					"\"%s\" is already the name of the gateway at line %d",
					gw->name, o->line);
	}
	return check_listen(ld, s, gw, idx);
}

/* ---- consistency ---- */

static unsigned warn_f(config_warn_fn *warn, void *arg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static unsigned warn_f(config_warn_fn *warn, void *arg, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warn(msg, arg);
	return 1;
}

unsigned config_warnings(const struct config *cfg, config_warn_fn *warn, void *arg)
{
	const struct config_limits *l = &cfg->limits;
	const struct config_penalties *p = &cfg->penalties;
	unsigned n = 0;

	if (l->per_source_startups == 0)
		n += warn_f(warn, arg,
			    "limits.per_source_startups = 0: one host may hold every login slot "
			    "(up to limits.startups.full = %u)",
			    l->startups_full);
	if (cfg->log_limits.per_source == 0)
		n += warn_f(warn, arg,
			    "log_limits.per_source = 0: a connection flood writes a line per "
			    "connection, and journald may then drop the daemon's lines, logins "
			    "included");
	if (!p->enabled)
		n += warn_f(warn, arg,
			    "penalties.enabled = false: failed logins and abandoned connections "
			    "cost their source nothing");
	else if (p->noauth_ms == 0)
		n += warn_f(warn, arg,
			    "penalties.noauth = 0: a host may open and drop connections as fast "
			    "as it likes without ever being refused");
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const struct config_gateway *g = &cfg->gateways[i];

		if (!g->authenticate)
			continue;
		if (l->startups_begin >= g->max_sessions)
			n += warn_f(warn, arg,
				    "gateway %s: max_sessions (%u) is reached before "
				    "limits.startups.begin (%u): random early drop never engages, "
				    "and connections that never log in can take every slot; set "
				    "startups below max_sessions",
				    g->name, g->max_sessions, l->startups_begin);
		if (l->per_source_startups > 0 && l->per_source_startups > g->max_sessions / 10)
			n += warn_f(warn, arg,
				    "gateway %s: one host may hold %u of its %u sessions while "
				    "logging in (limits.per_source_startups): more than a tenth",
				    g->name, l->per_source_startups, g->max_sessions);
		if (g->login.grace_time_ms == 0)
			n += warn_f(warn, arg,
				    "gateway %s: login.grace_time = 0: a connection may sit at the "
				    "prompt for ever",
				    g->name);
		for (size_t j = 0; j < g->n_listen && !g->tls.enabled; j++) {
			if (net_sockaddr_is_loopback((const struct sockaddr *)&g->listen[j].ss))
				continue;
			n += warn_f(warn, arg,
				    "gateway %s: passwords cross the network in clear on %s: add a "
				    "tls group",
				    g->name, g->listen[j].text);
			break;
		}
	}
	return n;
}

/* ---- reading ---- */

/* libconfig 1.5 silently wraps integer literals that do not fit in 32 bits
 * (max_sessions = 4294967297 reads as 1), so a typo could become a valid but
 * different value. This scan finds such literals before libconfig sees them; it
 * skips strings and comments the way libconfig's scanner does. It also refuses
 * @include: the whole configuration is one size-checked regular file. */
static int check_literals(struct loader *ld, const char *text)
{
	char name[CONFIG_MAX_NAME + 1] = "";
	const char *p = text;
	unsigned line = 1;

	while (*p != '\0') {
		const char *start = p;

		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p != '\0' && !(p[0] == '*' && p[1] == '/'); p++)
				line += *p == '\n';
			p += *p != '\0' ? 2 : 0;
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				line += *p == '\n';
			}
			p += *p != '\0';
		} else if (isalpha((unsigned char)*p) || *p == '*') {
			while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '*')
				p++;
			snprintf(name, sizeof(name), "%.*s", (int)(p - start), start);
		} else if (strncmp(p, "@include", 8) == 0) {
			return errbuf_set(ld->err,
					  "%s:%u: @include is not supported; keep the "
					  "configuration in one file",
					  ld->name, line);
		} else if (isdigit((unsigned char)*p) ||
			   ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
			char tok[64], *end;
			long long v;
			size_t len;
			int hex;

			p++;
			while (isalnum((unsigned char)*p) || *p == '.' ||
			       ((*p == '-' || *p == '+') && (p[-1] == 'e' || p[-1] == 'E')))
				p++;
			len = (size_t)(p - start);
			/* Fractions and 64-bit (L) literals are fine; malformed ones are
			 * libconfig's to report. */
			if (len >= sizeof(tok) || memchr(start, '.', len) != NULL || p[-1] == 'L')
				continue;
			memcpy(tok, start, len);
			tok[len] = '\0';
			hex = tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X');
			if (!hex && strpbrk(tok, "eE") != NULL)
				continue;
			errno = 0;
			v = strtoll(tok, &end, hex ? 16 : 10);
			if (*end != '\0')
				continue;
			if (errno == ERANGE || v > INT_MAX || v < INT_MIN)
				return errbuf_set(ld->err,
						  "%s:%u: %s: %s is too large for an integer "
						  "(%d..%d)",
						  ld->name, line, name, tok, INT_MIN, INT_MAX);
		} else {
			p++;
		}
	}
	return 0;
}

static void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	release_section(&top_section, cfg);
	free(cfg->path);
	free(cfg);
}

/* The absolute directory of name (the working directory for a bare name),
 * where relative paths in the file start. */
static char *dir_of(const char *name, struct errbuf *err)
{
	const char *slash = strrchr(name, '/');
	size_t len = slash == NULL ? 0 : (size_t)(slash - name), n;
	char *cwd, *dir;

	if (name[0] == '/') {
		dir = len == 0 ? strdup("/") : strndup(name, len);
	} else {
		cwd = getcwd(NULL, 0);
		if (cwd == NULL) {
			errbuf_errno(err, errno, "%s: cannot get the working directory", name);
			return NULL;
		}
		n = strlen(cwd) + 1 + len + 1;
		dir = malloc(n);
		if (dir != NULL)
			snprintf(dir, n, "%s%s%.*s", cwd,
				 len > 0 && strcmp(cwd, "/") != 0 ? "/" : "", (int)len, name);
		free(cwd);
	}
	if (dir == NULL)
		errbuf_set(err, "%s: out of memory", name);
	return dir;
}

static int refuse_size(struct errbuf *err, const char *name)
{
	char size[32];

	file_format_size(CONFIG_MAX_FILE_SIZE, size, sizeof(size));
	return errbuf_set(err, "%s: larger than %s; not a configuration file", name, size);
}

struct config *config_parse(const char *name, const char *text, struct errbuf *err)
{
	return config_parse_flags(name, text, 0, err);
}

struct config *config_parse_flags(const char *name, const char *text, unsigned flags,
				  struct errbuf *err)
{
	struct loader ld = {.name = name, .flags = flags, .err = err};
	config_setting_t *root;
	config_t lc;
	int rc = -1;

	config_init(&lc);
	if (strlen(text) > CONFIG_MAX_FILE_SIZE) {
		refuse_size(err, name);
		goto out;
	}
	ld.dir = dir_of(name, err);
	if (ld.dir == NULL || check_literals(&ld, text) < 0)
		goto out;
	ld.cred_dir = getenv("CREDENTIALS_DIRECTORY");
	if (ld.cred_dir != NULL && ld.cred_dir[0] == '\0')
		ld.cred_dir = NULL;
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		errbuf_set(err, "%s:%d: %s", name, config_error_line(&lc), config_error_text(&lc));
		goto out;
	}
	ld.cfg = calloc(1, sizeof(*ld.cfg));
	if (ld.cfg == NULL || (ld.cfg->path = strdup(name)) == NULL) {
		errbuf_set(err, "%s: out of memory", name);
		goto out;
	}
	ld.cfg->refs = 1;
	root = config_root_setting(&lc);
	rc = load_section(&ld, &top_section, root, root, NULL, ld.cfg);
out:
	if (rc < 0) {
		config_free(ld.cfg);
		ld.cfg = NULL;
	}
	config_destroy(&lc);
	free(ld.dir);
	return ld.cfg;
}

struct config *config_load(const char *path, struct errbuf *err)
{
	struct config *cfg = NULL;
	struct stat st;
	size_t len;
	char *text = file_read(path, CONFIG_MAX_FILE_SIZE, &st, &len, err);

	if (text == NULL)
		return NULL;
	/* libconfig would stop at a NUL and silently ignore the rest. */
	if (memchr(text, '\0', len) != NULL)
		errbuf_set(err, "%s: contains a NUL byte; not a configuration file", path);
	else
		cfg = config_parse(path, text, err);
	file_free(text, len);
	return cfg;
}

struct config *config_ref(struct config *cfg)
{
	if (cfg != NULL)
		__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_unref(struct config *cfg)
{
	/* Release/acquire so the last owner sees every other owner's reads done. */
	if (cfg != NULL && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

const struct config_gateway *config_find_gateway(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		if (strcmp(cfg->gateways[i].name, name) == 0)
			return &cfg->gateways[i];
	}
	return NULL;
}
