/* ctlproto: control requests (see ctlproto.h). */
#include "ctlproto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const commands[CTL__COMMANDS] = {
	[CTL_STATUS] = "status",       [CTL_SESSIONS] = "sessions",   [CTL_KILL] = "kill",
	[CTL_PENALTIES] = "penalties", [CTL_UPSTREAMS] = "upstreams", [CTL_PASSES] = "passes",
	[CTL_RELOAD] = "reload",       [CTL_DRAIN] = "drain",         [CTL_RESTART] = "restart",
};

const char *ctl_command_name(enum ctl_command cmd)
{
	return (unsigned)cmd < CTL__COMMANDS ? commands[cmd] : "?";
}

/* Up to 32 bytes of w for an error message, anything unprintable as '?': the
 * message goes back to a terminal. */
static const char *shown(const char *w, size_t len, char out[33])
{
	size_t n = len < 32 ? len : 32;

	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)w[i] > 0x20 && (unsigned char)w[i] < 0x7f ? w[i] : '?';
	out[n] = '\0';
	return out;
}

/* A value of printable ASCII without spaces, copied into out (cap bytes). */
static int copy_value(const char *v, size_t len, char *out, size_t cap, const char *name,
		      struct errbuf *why)
{
	if (len == 0 || len >= cap)
		return errbuf_set(why, "%s= must have 1 to %zu characters", name, cap - 1);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
			return errbuf_set(why, "%s= has a character that is not printable ASCII",
					  name);
	memcpy(out, v, len);
	out[len] = '\0';
	return 0;
}

static int take_arg(struct ctl_request *r, const char *w, size_t len, struct errbuf *why)
{
	const char *eq = memchr(w, '=', len);
	size_t nlen, vlen;
	const char *v;
	char text[64], show[33];

	if (eq == NULL) {
		if (len == 4 && memcmp(w, "json", 4) == 0)
			return r->json = true, 0;
		if ((r->cmd == CTL_PENALTIES && len == 4 && memcmp(w, "lift", 4) == 0) ||
		    (r->cmd == CTL_PASSES && len == 6 && memcmp(w, "revoke", 6) == 0))
			return r->change = true, 0;
		return errbuf_set(why, "unexpected word \"%s\"", shown(w, len, show));
	}
	nlen = (size_t)(eq - w);
	v = eq + 1;
	vlen = len - nlen - 1;
	/* Each at most once: "kill user=a user=b" must not mean only b. */
	if ((nlen == 7 && memcmp(w, "gateway", 7) == 0 && r->gateway[0] != '\0') ||
	    (nlen == 4 && memcmp(w, "user", 4) == 0 && r->user[0] != '\0') ||
	    (nlen == 2 && memcmp(w, "id", 2) == 0 && r->id[0] != '\0') ||
	    (nlen == 6 && memcmp(w, "source", 6) == 0 && r->has_source) ||
	    (nlen == 7 && memcmp(w, "timeout", 7) == 0 && r->timeout_s != 0))
		return errbuf_set(why, "%s= given twice", shown(w, nlen, show));
	if (nlen == 7 && memcmp(w, "gateway", 7) == 0)
		return copy_value(v, vlen, r->gateway, sizeof(r->gateway), "gateway", why);
	if (nlen == 4 && memcmp(w, "user", 4) == 0)
		return copy_value(v, vlen, r->user, sizeof(r->user), "user", why);
	if (nlen == 2 && memcmp(w, "id", 2) == 0)
		return copy_value(v, vlen, r->id, sizeof(r->id), "id", why);
	if (nlen == 6 && memcmp(w, "source", 6) == 0) {
		struct errbuf e;

		if (copy_value(v, vlen, text, sizeof(text), "source", why) < 0)
			return -1;
		if (net_parse_cidr(text, &r->source, &e) < 0)
			return errbuf_set(why, "source=: %s", e.msg);
		r->has_source = true;
		return 0;
	}
	if (nlen == 7 && memcmp(w, "timeout", 7) == 0) {
		unsigned long t = 0;

		if (vlen == 0 || vlen > 6)
			return errbuf_set(why, "timeout= must be 1 to 999999 seconds");
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return errbuf_set(why, "timeout= must be a number of seconds");
			t = t * 10 + (unsigned long)(v[i] - '0');
		}
		if (t == 0)
			return errbuf_set(why, "timeout= must be 1 to 999999 seconds");
		r->timeout_s = (unsigned)t;
		return 0;
	}
	return errbuf_set(why, "unknown argument \"%s\"", shown(w, nlen, show));
}

int ctl_parse(const char *line, size_t len, struct ctl_request *r, struct errbuf *why)
{
	size_t at = 0, n = 0;
	bool have_cmd = false;

	memset(r, 0, sizeof(*r));
	if (len >= CTL_MAX_REQUEST)
		return errbuf_set(why, "request longer than %d bytes", CTL_MAX_REQUEST - 1);
	if (memchr(line, '\0', len) != NULL)
		return errbuf_set(why, "request contains a NUL byte");
	while (at < len) {
		const char *sp = memchr(line + at, ' ', len - at);
		size_t end = sp != NULL ? (size_t)(sp - line) : len, wlen = end - at;
		const char *w = line + at;

		at = end + 1;
		if (wlen == 0)
			return errbuf_set(why, "two spaces in a row");
		if (++n > 8)
			return errbuf_set(why, "too many words");
		if (!have_cmd) {
			char show[33];
			unsigned c;

			for (c = 0; c < CTL__COMMANDS; c++)
				if (strlen(commands[c]) == wlen &&
				    memcmp(commands[c], w, wlen) == 0)
					break;
			if (c == CTL__COMMANDS)
				return errbuf_set(why, "unknown command \"%s\"",
						  shown(w, wlen, show));
			r->cmd = (enum ctl_command)c;
			have_cmd = true;
			continue;
		}
		if (take_arg(r, w, wlen, why) < 0)
			return -1;
	}
	if (!have_cmd)
		return errbuf_set(why, "empty request");
	if (r->cmd == CTL_KILL &&
	    (r->id[0] != '\0') + (r->user[0] != '\0') + (r->has_source ? 1 : 0) != 1)
		return errbuf_set(why, "kill needs exactly one of id=, user= or source=");
	if (r->cmd == CTL_PENALTIES && r->change && !r->has_source)
		return errbuf_set(why, "penalties lift needs source=ADDRESS");
	if (r->cmd == CTL_PASSES && r->change && !r->has_source && r->user[0] == '\0')
		return errbuf_set(why, "passes revoke needs source= or user=");
	return 0;
}
