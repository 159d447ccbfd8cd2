/* log: one event per line. Each event has a fixed id (its journal MESSAGE_ID),
 * a short human message and key=value fields named as journal fields
 * (SOCKGATE_USER, REMOTE_ADDR, ...). On a terminal or pipe a line reads
 *   sockgate: login ok gateway=demo user="alice" remote_addr=127.0.0.1 ...
 * Values are always sanitised: control bytes, quotes and backslashes are escaped,
 * so a client cannot forge log lines. Thread-safe: one write() per line. */
#ifndef SOCKGATE_LOG_H
#define SOCKGATE_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Event types; each has a stable MESSAGE_ID (see log.c and the catalog). */
enum log_event {
	LOG_EV_GENERIC = 0,
	LOG_EV_STARTED,
	LOG_EV_LISTENING,
	LOG_EV_RELOADED,
	LOG_EV_RELOAD_FAILED,
	LOG_EV_LOGIN_OK,
	LOG_EV_LOGIN_FAILED,
	LOG_EV_SESSION_CLOSED,
	LOG_EV_UPSTREAM_UNREACHABLE,
	LOG_EV_LIMIT_REACHED,
	LOG_EV_STOPPING,
	LOG_EV_CONFIG_ERROR,
	LOG_EV_PENALTY,
	LOG_EV_REVOKED,
	LOG_EV_UNAUTH_SUMMARY,
	LOG_EV_STALLED,
	LOG_EV_UPSTREAM_STATE,
	LOG_EV_RECORDING,
	LOG_EV_CARRIED,
	LOG_EV__COUNT
};

/* A field: journal-style name (upper case) and a value. */
struct log_field {
	const char *name;
	const char *value;
};

/* Where lines go. The default is stderr as plain text. */
void log_init(const char *ident, int max_priority);
/* Use the journal's native protocol (sd_journal_send) with structured fields. */
void log_use_journal(bool on);
bool log_using_journal(void);
void log_set_max_priority(int max_priority);

/* Logs one event; fields is an array of n fields (values may be NULL: skipped). */
void log_event(int priority, enum log_event ev, const char *message, const struct log_field *fields,
	       unsigned n);

/* Free-form messages without fields (start-up errors, debugging). */
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The MESSAGE_ID of ev as 32 hex digits. */
const char *log_event_id(enum log_event ev);

/* Writes value into buf escaped as the plain-text form does ("a\x01b" style,
 * quotes and backslashes escaped), truncating to fit; always NUL-terminates. */
void log_sanitize(const char *value, char *buf, unsigned len);

#define LOG_FIELDS(...)                                                                            \
	((const struct log_field[]){__VA_ARGS__}),                                                 \
		(unsigned)(sizeof((const struct log_field[]){__VA_ARGS__}) /                       \
			   sizeof(struct log_field))

#endif
