/* fuzz_ctl: what a peer of the control socket can send. Only root or the
 * control group can connect, but a parser that trusts them would let a bug in
 * a script become a crash of the daemon. ctl_parse() runs on the bytes; an
 * accepted request must keep the contract of ctlproto.h (strings terminated,
 * printable, in bounds; a change only with its command), and an error must be
 * a terminated message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
	fprintf(stderr, "fuzz_ctl: %s\n", what);
	abort();
}

static void check_field(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		die("a field is not terminated");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			die("a field holds a character that is not printable ASCII");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_request r;
	struct errbuf why;

	memset(&why, 0, sizeof(why));
	if (ctl_parse((const char *)data, size, &r, &why) < 0) {
		if (strnlen(why.msg, sizeof(why.msg)) == sizeof(why.msg) || why.msg[0] == '\0')
			die("a refusal without a terminated message");
		/* It goes back to sockgatectl's terminal. */
		for (const char *c = why.msg; *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				die("a refusal that echoes an unprintable byte");
		return 0;
	}
	if (size > CTL_MAX_REQUEST)
		die("a request longer than CTL_MAX_REQUEST was accepted");
	if ((unsigned)r.cmd >= CTL__COMMANDS)
		die("accepted an unknown command");
	if (strcmp(ctl_command_name(r.cmd), "?") == 0)
		die("a command without a name");
	check_field(r.gateway, sizeof(r.gateway));
	check_field(r.user, sizeof(r.user));
	check_field(r.id, sizeof(r.id));
	if (r.change && r.cmd != CTL_PENALTIES && r.cmd != CTL_PASSES)
		die("a change word accepted for a command without one");
	if (r.cmd == CTL_KILL && r.id[0] == '\0' && r.user[0] == '\0' && !r.has_source)
		die("kill accepted without a selector");
	if (r.timeout_s > 999999)
		die("timeout out of range");
	return 0;
}
