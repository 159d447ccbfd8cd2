/* log: plain key=value lines on stderr, or structured journal entries (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#define LOG_LINE_MAX   4096
#define LOG_VALUE_MAX  512
#define LOG_FIELDS_MAX 20

static const char *log_ident = "sockgate";
static int log_max_priority = LOG_INFO;
static bool log_journal;

/* Stable ids: never change one once released; the catalog refers to them. */
static const char *const log_event_ids[LOG_EV__COUNT] = {
	[LOG_EV_GENERIC] = NULL,
	[LOG_EV_STARTED] = "4ca9c5afd40841929a1df95b02c6d1fa",
	[LOG_EV_LISTENING] = "e6d71766837b416da608b7d07a553267",
	[LOG_EV_RELOADED] = "dfe40f465ea04267aa808db272b7f917",
	[LOG_EV_RELOAD_FAILED] = "842dde96e95a4d14b368521feedf18dd",
	[LOG_EV_LOGIN_OK] = "92da741244fe49ca93036adb1f70a8a8",
	[LOG_EV_LOGIN_FAILED] = "0749111090db42738f58222434f92f1e",
	[LOG_EV_SESSION_CLOSED] = "2e852d806caf449ead0c66a7d273949b",
	[LOG_EV_UPSTREAM_UNREACHABLE] = "c77a44fcdb1f422398bfc1e755910723",
	[LOG_EV_LIMIT_REACHED] = "166999729f894a948506ef3f8eab70cd",
	[LOG_EV_STOPPING] = "b1f731a7b7ba4490bdd5484d1f391ef0",
	[LOG_EV_CONFIG_ERROR] = "94efb2163f3748d886824a7f2f2a9964",
	[LOG_EV_PENALTY] = "556562610acf48ee8482f2826ec2f853",
	[LOG_EV_REVOKED] = "aea77d37de4d4d38b8c8cebff328e0b0",
	[LOG_EV_UNAUTH_SUMMARY] = "511bd625a26142aeb39b4cb1db0307bd",
	[LOG_EV_STALLED] = "968844cec9a04dff89125fd41822bf0c",
	[LOG_EV_UPSTREAM_STATE] = "47009cdfa31b4059bc6971c360c76f28",
	[LOG_EV_RECORDING] = "23c002e75d494a53a4a175579df7c38a",
	[LOG_EV_CARRIED] = "1232b5289c27409bae06e1738483dde7",
};

void log_init(const char *ident, int max_priority)
{
	log_ident = ident;
	log_max_priority = max_priority;
}

void log_use_journal(bool on)
{
	log_journal = on;
}

bool log_using_journal(void)
{
	return log_journal;
}

void log_set_max_priority(int max_priority)
{
	log_max_priority = max_priority;
}

const char *log_event_id(enum log_event ev)
{
	if ((unsigned)ev >= LOG_EV__COUNT)
		return NULL;
	return log_event_ids[ev];
}

/* Escapes control and non-ASCII bytes (a client must not forge log lines or
 * terminal escapes in an operator's log) and, if quotes, '"' and '\\'. */
static void log_escape(const char *value, char *buf, unsigned len, bool quotes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned o = 0;

	if (len == 0)
		return;
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		char esc[4];
		unsigned n = 0;

		if (quotes && (*p == '"' || *p == '\\')) {
			esc[n++] = '\\';
			esc[n++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f) {
			esc[n++] = '\\';
			esc[n++] = 'x';
			esc[n++] = hex[*p >> 4];
			esc[n++] = hex[*p & 15];
		} else {
			esc[n++] = (char)*p;
		}
		if (o + n >= len)
			break;
		memcpy(buf + o, esc, n);
		o += n;
	}
	buf[o] = '\0';
}

void log_sanitize(const char *value, char *buf, unsigned len)
{
	log_escape(value, buf, len, true);
}

/* The plain-text key of a journal field name: SOCKGATE_USER -> user. */
static void log_key(const char *name, char *buf, size_t len)
{
	size_t i = 0;

	if (strncmp(name, "SOCKGATE_", 9) == 0)
		name += 9;
	for (; name[i] != '\0' && i + 1 < len; i++)
		buf[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	buf[i] = '\0';
}

static bool log_needs_quotes(const char *s)
{
	if (*s == '\0')
		return true;
	for (; *s != '\0'; s++)
		if (*s == ' ' || *s == '"' || *s == '=' || *s == '\\')
			return true;
	return false;
}

/* Formats "message key=value ..." into line; returns its length. */
static size_t log_format(char *line, size_t len, const char *message,
			 const struct log_field *fields, unsigned n, char values[][LOG_VALUE_MAX])
{
	size_t o;
	int w;

	w = snprintf(line, len, "%s", message);
	o = w < 0 ? 0 : (size_t)w >= len ? len - 1 : (size_t)w;
	for (unsigned i = 0; i < n; i++) {
		char key[64];

		if (fields[i].value == NULL)
			continue;
		log_key(fields[i].name, key, sizeof(key));
		/* User names are always quoted: they are what a client typed. */
		if (strcmp(fields[i].name, "SOCKGATE_USER") == 0 || log_needs_quotes(values[i]))
			w = snprintf(line + o, len - o, " %s=\"%s\"", key, values[i]);
		else
			w = snprintf(line + o, len - o, " %s=%s", key, values[i]);
		if (w < 0 || (size_t)w >= len - o) {
			o = len - 1;
			break;
		}
		o += (size_t)w;
	}
	return o;
}

static int log_journal_send(int priority, enum log_event ev, const char *line, size_t len,
			    const struct log_field *fields, unsigned n,
			    char values[][LOG_VALUE_MAX])
{
	char msg[LOG_LINE_MAX + 16], prio[32], ident[96], id[64];
	char body[LOG_FIELDS_MAX][LOG_VALUE_MAX + 64];
	struct iovec iov[4 + LOG_FIELDS_MAX];
	unsigned k = 0;

#define LOG_IOV(s) (iov[k].iov_base = (s), iov[k++].iov_len = strlen(s))
	snprintf(msg, sizeof(msg), "MESSAGE=%.*s", (int)len, line);
	snprintf(prio, sizeof(prio), "PRIORITY=%d", priority);
	snprintf(ident, sizeof(ident), "SYSLOG_IDENTIFIER=%s", log_ident);
	LOG_IOV(msg);
	LOG_IOV(prio);
	LOG_IOV(ident);
	if (log_event_id(ev) != NULL) {
		snprintf(id, sizeof(id), "MESSAGE_ID=%s", log_event_id(ev));
		LOG_IOV(id);
	}
	for (unsigned i = 0; i < n; i++) {
		if (fields[i].value == NULL)
			continue;
		snprintf(body[i], sizeof(body[i]), "%s=%s", fields[i].name, values[i]);
		LOG_IOV(body[i]);
	}
#undef LOG_IOV
	return sd_journal_sendv(iov, (int)k);
}

void log_event(int priority, enum log_event ev, const char *message, const struct log_field *fields,
	       unsigned n)
{
	char values[LOG_FIELDS_MAX][LOG_VALUE_MAX];
	char line[LOG_LINE_MAX];
	char out[LOG_LINE_MAX + 96];
	size_t len;
	int w;

	if (priority > log_max_priority)
		return;
	if (n > LOG_FIELDS_MAX)
		n = LOG_FIELDS_MAX;
	for (unsigned i = 0; i < n; i++)
		log_escape(fields[i].value != NULL ? fields[i].value : "", values[i],
			   sizeof(values[i]), fields[i].value != NULL);
	len = log_format(line, sizeof(line), message, fields, n, values);

	/* If the journal is gone (shutting down), fall back to stderr. */
	if (log_journal && log_journal_send(priority, ev, line, len, fields, n, values) >= 0)
		return;
	w = snprintf(out, sizeof(out), "%s: %.*s\n", log_ident, (int)len, line);
	if (w > 0)
		(void)!write(STDERR_FILENO, out,
			     (size_t)w < sizeof(out) ? (size_t)w : sizeof(out) - 1);
}

void log_msg(int priority, const char *fmt, ...)
{
	char text[LOG_LINE_MAX];
	char clean[LOG_LINE_MAX];
	va_list ap;

	if (priority > log_max_priority)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* Free-form text may carry outside bytes (a path, a config value). */
	log_escape(text, clean, sizeof(clean), false);
	log_event(priority, LOG_EV_GENERIC, clean, NULL, 0);
}
