#!/bin/bash
# test_systemd.sh BUILD_DIR: sockgate as a systemd service, in a guest systemd
# booted by guest.sh: install, start, log in, the journal's structured events,
# reload with a live session, socket activation, a clean stop, the units
# checked by systemd-analyze and the journal catalog. Exits 77 (skipped)
# where the guest cannot run (but fails in CI, where it must run).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 && -f $1/CMakeCache.txt ]] || {
	echo "usage: $0 BUILD_DIR (a configured and built sockgate tree)" >&2
	exit 2
}
build=$(cd "$1" && pwd)
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
[[ -d $src ]] || { echo "cannot find the source tree of $build" >&2; exit 2; }

# shellcheck source=guest.sh
source "$here/guest.sh"

# Stable ids from src/core/log.c.
ID_LISTENING=e6d71766837b416da608b7d07a553267
ID_RELOADED=dfe40f465ea04267aa808db272b7f917
ID_LOGIN_OK=92da741244fe49ca93036adb1f70a8a8
ID_LOGIN_FAILED=0749111090db42738f58222434f92f1e
ID_SESSION_CLOSED=2e852d806caf449ead0c66a7d273949b
ID_STOPPING=b1f731a7b7ba4490bdd5484d1f391ef0
# systemd's own "Reloaded UNIT." message (a reload job done), from its catalog.
ID_UNIT_RELOADED=7b05ebc668384222baa8881179cfda54

# A password of this run only, so finding it anywhere in the journal means a leak.
PW=pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
NEW_SUCCESS='Configuration reloaded: welcome.'

g() { guest_run "$@"; }

fail()
{
	echo "FAIL: $*" >&2
	if [[ -n $GUEST_PID ]]; then
		echo "--- systemctl status sockgate sockgate.socket sockgate-upstream" >&2
		g systemctl status --no-pager -l sockgate sockgate.socket sockgate-upstream >&2 || true
		echo "--- journal (last 80 lines)" >&2
		g journalctl --no-pager -n 80 -o short-monotonic >&2 || true
	fi
	exit 1
}

ok() { echo "ok: $*"; }

active_state() { g systemctl is-active "$1" 2>/dev/null || true; }
is_state() { [[ $(active_state "$1") == "$2" ]]; }
status_counts_one() { [[ $(g systemctl show -P StatusText sockgate) =~ ^1\ sessions ]]; }
port_listening() { [[ -n $(g ss -Hltn "sport = :$1") ]]; }
# The scheduling policy and nice value of sockgate's password-check threads
# (fields 41 and 19 of /proc/PID/task/TID/stat), one line per distinct pair.
auth_sched()
{
	g sh -c 'pid=$(systemctl show -P MainPID sockgate)
		for t in /proc/$pid/task/*; do
			[ "$(cat "$t/comm")" = sockgate-auth ] && awk "{ print \$41, \$19 }" "$t/stat"
		done | sort -u'
}
auth_sched_is_batch_19() { [[ $(auth_sched) == "3 19" ]]; }

# journal ARGS...: the matching entries as JSON, one per line.
journal() { g journalctl --no-pager -o json "$@"; }
has_entries() { [[ -n $(journal "$@") ]]; }
# has_n_entries N ARGS...: at least N entries match.
has_n_entries() { local n=$1; shift; [[ $(journal "$@" | grep -c .) -ge $n ]]; }

# check_fields WHAT FIELD[=VALUE]...: stdin holds JSON entries; passes if one
# entry has every field (with that value, if given), else says what differs.
check_fields()
{
	local what=$1
	shift
	python3 -c '
import json, sys
what, want = sys.argv[1], sys.argv[2:]
entries = [json.loads(l) for l in sys.stdin if l.strip()]
def missing(e):
    out = []
    for w in want:
        k, eq, v = w.partition("=")
        if k not in e:
            out.append("%s is missing" % k)
        elif eq and e[k] != v:
            out.append("%s=%r, expected %r" % (k, e[k], v))
    return out
if not entries:
    sys.exit("%s: no such journal entry" % what)
problems = [missing(e) for e in entries]
if not any(not p for p in problems):
    sys.exit("%s: %s (entry: %s)" % (what, "; ".join(problems[-1]),
             entries[-1].get("MESSAGE")))
' "$what" "$@"
}

# field_values FIELD: stdin holds JSON entries; prints FIELD of each, one a line.
field_values()
{
	python3 -c '
import json, sys
for l in sys.stdin:
    if l.strip():
        print(json.loads(l).get(sys.argv[1], ""))
' "$1"
}

# seqnum: stdin holds JSON entries; prints the journal sequence number (the
# order journald received them in) of the last one.
seqnum()
{
	python3 -c '
import json, re, sys
entries = [json.loads(l) for l in sys.stdin if l.strip()]
print(int(re.search(r";i=([0-9a-f]+)", entries[-1]["__CURSOR"]).group(1), 16) if entries else "")
'
}

# login HOST PORT LINE: logs in as alice, sends LINE, prints what the client saw.
login()
{
	printf 'alice\n%s\n%s\n' "$PW" "$3" | g timeout 20 sockgate-client "$1" "$2" 2>&1
}

write_config()
{
	local success=$1 second=$2
	{
		cat <<-EOF
			# Written by tests/systemd/test_systemd.sh
			workers = 2;
			auth_threads = 1;
			gateways = (
			  {
			    name = "demo";
			    listen = ( "127.0.0.1:2323", "[::1]:2323" );
			    upstream = ( "127.0.0.1:8080" );
			    credentials = "users";
		EOF
		[[ -n $success ]] && printf '    login = { success_message = "%s\\n"; };\n' "$success"
		echo '  }'
		if [[ -n $second ]]; then
			cat <<-EOF
				  , {
				    name = "second";
				    listen = ( "127.0.0.1:2324" );
				    upstream = ( "127.0.0.1:8080" );
				    credentials = "users";
				  }
			EOF
		fi
		echo ');'
	} | g install -m 0644 /dev/stdin /etc/sockgate.conf
}

echo "== booting a guest systemd (source $src, build $build)"
shares=("$src")
[[ $build == "$src"/* ]] || shares+=("$build")
guest_start "${shares[@]}"
ok "guest systemd is up (PID $GUEST_PID on the host)"

echo "== installing the build tree into the guest"
g cmake --install "$build" >"$GUEST_STATE/install.log" 2>&1 ||
	{ cat "$GUEST_STATE/install.log" >&2; fail "cmake --install $build failed in the guest"; }
for prog in sockgate sockgate-client sockgate-server sockgate-passwd; do
	g sh -c "command -v $prog" >/dev/null || fail "cmake --install did not install $prog"
done
g systemctl daemon-reload
for u in sockgate.service sockgate.socket; do
	[[ $(g systemctl show -P LoadState $u) == loaded ]] ||
		fail "cmake --install did not install $u where systemd finds it"
done
if grep -Eq '^SOCKGATE_(SANITIZE|FUZZ):BOOL=ON$' "$build/CMakeCache.txt"; then
	# LeakSanitizer stops the process with ptrace at exit, which the unit's
	# SystemCallFilter= forbids: it would fail every stop. The other checks
	# (ASan, UBSan) stay on; the integration tests look for leaks.
	echo "NOTE: sanitizer build: LeakSanitizer off for sockgate.service (it needs ptrace)" >&2
	g mkdir -p /etc/systemd/system/sockgate.service.d
	printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' |
		g install -m 0644 /dev/stdin /etc/systemd/system/sockgate.service.d/sanitizer.conf
	g systemctl daemon-reload
fi
unit_file=$(g systemctl show -P FragmentPath sockgate.service)
socket_file=$(g systemctl show -P FragmentPath sockgate.socket)
[[ -n $unit_file && -n $socket_file ]] || fail "systemd does not find the sockgate units"
ok "installed: $(g sh -c 'command -v sockgate'), $unit_file, $socket_file"

echo "== configuration, credentials and the upstream"
write_config "" ""
g mkdir -p -m 0755 /etc/sockgate
printf '%s\n' "$PW" | g sockgate-passwd -c --stdin /etc/sockgate/users alice >/dev/null ||
	fail "sockgate-passwd could not create /etc/sockgate/users"
g systemd-run --quiet --unit=sockgate-upstream -p Type=exec -p DynamicUser=yes \
	"$(g sh -c 'command -v sockgate-server')" -l 127.0.0.1 -p 8080 --tag up1 ||
	fail "systemd-run could not start the upstream"
poll_until 10 port_listening 8080 || fail "the upstream sockgate-server is not listening on 127.0.0.1:8080"
ok "upstream sockgate-server --tag up1 listens on 127.0.0.1:8080"

echo "== a. start"
g timeout 60 systemctl start sockgate || fail "systemctl start sockgate failed"
[[ $(active_state sockgate) == active ]] || fail "sockgate is $(active_state sockgate) after start, not active"
status=$(g systemctl show -P StatusText sockgate)
[[ $status =~ ^0\ sessions ]] || fail "StatusText is \"$status\", expected a count like \"0 sessions\""
ok "sockgate is active, StatusText=\"$status\""
# Under the unit's system-call filter the checks still get below the relays
# (SCHED_BATCH is policy 3); each thread sets it as it starts.
poll_until 10 auth_sched_is_batch_19 ||
	fail "password-check threads run at policy/nice \"$(auth_sched)\", expected SCHED_BATCH (3), nice 19"
ok "password-check threads run at SCHED_BATCH, nice 19"

echo "== b. log in through the gateway"
out=$(login 127.0.0.1 2323 hello) || fail "sockgate-client over 127.0.0.1 failed: $out"
[[ $out == *"You are now logged in."* ]] || fail "no \"You are now logged in.\" from 127.0.0.1:2323; got: $out"
[[ $out == *"[up1] I got your message: hello"* ]] || fail "hello was not relayed to up1; got: $out"
ok "alice logged in over 127.0.0.1:2323 and up1 answered"
out=$(login ::1 2323 hello6) || fail "sockgate-client over ::1 failed: $out"
[[ $out == *"[up1] I got your message: hello6"* ]] || fail "no relay over [::1]:2323; got: $out"
ok "alice logged in over [::1]:2323 and up1 answered"

echo "== c. the journal"
# The session's summary is logged as it closes, maybe after the client exited.
poll_until 10 has_entries -u sockgate MESSAGE_ID=$ID_SESSION_CLOSED REMOTE_ADDR=127.0.0.1 ||
	fail "no session-closed event (MESSAGE_ID=$ID_SESSION_CLOSED) for the 127.0.0.1 session"
journal -u sockgate MESSAGE_ID=$ID_LOGIN_OK | check_fields "login-ok event" \
	MESSAGE_ID=$ID_LOGIN_OK SOCKGATE_USER=alice REMOTE_ADDR=127.0.0.1 REMOTE_PORT \
	SOCKGATE_GATEWAY=demo PRIORITY=6 || fail "login-ok event"
journal -u sockgate MESSAGE_ID=$ID_SESSION_CLOSED REMOTE_ADDR=127.0.0.1 |
	check_fields "session-closed event" SOCKGATE_USER=alice SOCKGATE_GATEWAY=demo \
		UPSTREAM=127.0.0.1:8080 BYTES_IN=6 BYTES_OUT DURATION_MS REASON ||
	fail "session-closed event"
ok "login-ok and session-closed events carry their fields"
g journalctl --no-pager -o export >"$GUEST_STATE/journal.export"
# Not vacuous: the export holds the logins whose password is looked for.
grep -aq "^MESSAGE_ID=$ID_LOGIN_OK" "$GUEST_STATE/journal.export" ||
	fail "journalctl -o export has no login-ok event: cannot vouch it holds no password"
grep -aqF -- "$PW" "$GUEST_STATE/journal.export" && fail "the password appears in the journal"
ok "the password appears nowhere in the journal ($(grep -ac '^MESSAGE=' "$GUEST_STATE/journal.export") entries)"

echo "== c2. fail2ban reads failed logins from the journal"
# Two failures from 127.0.0.1, one from ::1; one user name tries to pose as
# another address. The filter must find exactly these, each with the client's
# real address, by journal fields (unit and MESSAGE_ID) and an anchored regex.
printf 'alice\nwrong-1\n' | g timeout 20 sockgate-client 127.0.0.1 2323 >/dev/null 2>&1 || true
printf 'x remote_addr=203.0.113.9 remote_port=1 y\nwrong-2\n' |
	g timeout 20 sockgate-client 127.0.0.1 2323 >/dev/null 2>&1 || true
printf 'nobody\nwrong-3\n' | g timeout 20 sockgate-client ::1 2323 >/dev/null 2>&1 || true
poll_until 10 has_n_entries 3 -u sockgate MESSAGE_ID=$ID_LOGIN_FAILED ||
	fail "expected 3 login-failed events (MESSAGE_ID=$ID_LOGIN_FAILED) in the journal"
g install -m 0644 /dev/stdin /etc/fail2ban/filter.d/sockgate.conf \
	<"$src/etc/fail2ban/filter.d/sockgate.conf"
f2b=$(g fail2ban-regex systemd-journal sockgate 2>&1) || fail "fail2ban-regex failed: $f2b"
grep -Eq '^Failregex: 3 total' <<<"$f2b" || fail "fail2ban-regex did not match the 3 failed logins: $f2b"
# The addresses fail2ban would ban: the clients', never one a user name named.
ips=$(g fail2ban-regex -o ip systemd-journal sockgate 2>&1 | sort | tr '\n' ' ')
[[ $ips == "127.0.0.1 127.0.0.1 ::1 " ]] ||
	fail "fail2ban-regex found the addresses \"$ips\", expected 127.0.0.1 (twice) and ::1"
ok "fail2ban-regex finds the 3 failed logins in the journal, with the real addresses"

echo "== d. reload with a logged-in session"
coproc LONG { g sockgate-client 127.0.0.1 2323 2>&1; }
# shellcheck disable=SC2153 # set by coproc
long_out=${LONG[0]} long_in=${LONG[1]} long_pid=$LONG_PID
printf 'alice\n%s\n' "$PW" >&"$long_in"
expect_line "$long_out" "You are now logged in." 20 || fail "the long-lived session did not log in"
printf 'before reload\n' >&"$long_in"
expect_line "$long_out" "[up1] I got your message: before reload" 10 ||
	fail "the long-lived session does not relay"
# The status is refreshed every second.
poll_until 5 status_counts_one ||
	fail "StatusText does not count the open session: $(g systemctl show -P StatusText sockgate)"
ok "long-lived session logged in and relaying; StatusText=\"$(g systemctl show -P StatusText sockgate)\""

write_config "$NEW_SUCCESS" second
g timeout 60 systemctl reload sockgate || fail "systemctl reload sockgate failed"
# No wait here: `systemctl reload` returns once sockgate said READY=1 again.
out=$(login 127.0.0.1 2323 hi) || fail "login after the reload failed: $out"
[[ $out == *"$NEW_SUCCESS"* ]] ||
	fail "right after systemctl reload returned, a login does not see the new success_message; got: $out"
out=$(login 127.0.0.1 2324 second) || fail "login on the new gateway failed: $out"
[[ $out == *"$NEW_SUCCESS"* ]] && fail "the second gateway took demo's success_message: $out"
[[ $out == *"[up1] I got your message: second"* ]] || fail "the gateway added by the reload does not relay; got: $out"
ok "right after systemctl reload: new success_message in effect, new gateway on 2324 relays"
poll_until 10 has_entries -u sockgate MESSAGE_ID=$ID_RELOADED ||
	fail "no \"configuration reloaded\" event (MESSAGE_ID=$ID_RELOADED) in the journal"
# The login above is slower than most reloads, so it may miss a reload job
# that finished early. The journal's order does not: sockgate logs its event
# before it sends READY=1, and systemd logs "Reloaded" when the job ends.
poll_until 10 has_entries MESSAGE_ID=$ID_UNIT_RELOADED UNIT=sockgate.service ||
	fail "no \"Reloaded sockgate.service\" message from systemd"
ours=$(journal -u sockgate MESSAGE_ID=$ID_RELOADED | seqnum)
theirs=$(journal MESSAGE_ID=$ID_UNIT_RELOADED UNIT=sockgate.service | seqnum)
((ours < theirs)) ||
	fail "systemctl reload returned before sockgate had reloaded: systemd ended the reload job (journal seqnum $theirs) before sockgate logged \"configuration reloaded\" (seqnum $ours)"
[[ $(active_state sockgate) == active ]] || fail "sockgate is $(active_state sockgate) after the reload"
printf 'after reload\n' >&"$long_in"
expect_line "$long_out" "[up1] I got your message: after reload" 10 ||
	fail "the session opened before the reload no longer relays"
ok "\"configuration reloaded\" in the journal; the earlier session still relays"
exec {long_in}>&-
# The client half-closes; the upstream answers EOF with EOF; the client exits.
if IFS= read -r -t 10 -u "$long_out" line; then
	fail "the long-lived client printed \"$line\" after its input ended"
elif (($? > 128)); then
	fail "the long-lived client did not finish within 10s of its input ending"
fi
wait "$long_pid" || fail "the long-lived client exited with status $?"

echo "== e. socket activation"
g timeout 60 systemctl stop sockgate || fail "systemctl stop sockgate failed"
g timeout 60 systemctl start sockgate.socket || fail "systemctl start sockgate.socket failed"
[[ $(active_state sockgate.socket) == active ]] || fail "sockgate.socket is $(active_state sockgate.socket)"
[[ $(active_state sockgate) == inactive ]] ||
	fail "sockgate is $(active_state sockgate) before any connection, expected inactive"
out=$(login 127.0.0.1 2323 activated) || fail "login through the activated socket failed: $out"
[[ $out == *"[up1] I got your message: activated"* ]] ||
	fail "the first client through sockgate.socket was not served; got: $out"
[[ $(active_state sockgate) == active ]] || fail "sockgate is $(active_state sockgate) after socket activation"
inv=$(g systemctl show -P InvocationID sockgate)
poll_until 10 has_entries _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_LISTENING SOCKGATE_SOURCE=systemd ||
	fail "no \"listening\" event with SOCKGATE_SOURCE=systemd from the activated sockgate"
journal _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_LISTENING SOCKGATE_SOURCE=systemd |
	check_fields "listening event" SOCKGATE_GATEWAY=demo SOCKGATE_LISTEN || fail "listening event"
listen=$(journal _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_LISTENING SOCKGATE_SOURCE=systemd |
	field_values SOCKGATE_LISTEN | sort | tr '\n' ' ')
[[ $listen == "127.0.0.1:2323 [::1]:2323 " ]] ||
	fail "sockets from systemd: \"$listen\", expected 127.0.0.1:2323 and [::1]:2323"
ok "the first connection started sockgate, which serves systemd's socket"

echo "== f. stop"
g timeout 60 systemctl stop sockgate sockgate.socket || fail "systemctl stop sockgate sockgate.socket failed"
for u in sockgate sockgate.socket; do
	[[ $(active_state $u) == inactive ]] || fail "$u is $(active_state $u) after stop"
done
result=$(g systemctl show -p Result,ExecMainStatus sockgate | sort | tr '\n' ' ')
[[ $result == "ExecMainStatus=0 Result=success " ]] || fail "after stop: $result"
poll_until 10 has_entries _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_STOPPING ||
	fail "no \"stopping\" event (MESSAGE_ID=$ID_STOPPING) in the journal"
ok "stopped: $result, \"stopping\" in the journal"

echo "== g. systemd-analyze"
verify=$(g systemd-analyze verify --man=no "$unit_file" "$socket_file" 2>&1) ||
	fail "systemd-analyze verify failed: $verify"
[[ -z $verify ]] || fail "systemd-analyze verify is not silent: $verify"
security=$(g systemd-analyze security --no-pager --offline=true --threshold=15 "$unit_file" 2>&1) ||
	fail "systemd-analyze security: exposure above 1.5: $(tail -n 3 <<<"$security")"
ok "verify is silent; security $(grep -o 'Overall exposure level.*' <<<"$security")"
g journalctl --update-catalog || fail "journalctl --update-catalog rejects the installed catalog"
catalog=$(g journalctl --no-pager --list-catalog)
for id in $ID_LISTENING $ID_RELOADED $ID_LOGIN_OK $ID_SESSION_CLOSED $ID_STOPPING; do
	grep -q "^$id " <<<"$catalog" || fail "the installed journal catalog does not explain $id"
done
ok "journalctl -x explains sockgate's events (catalog installed)"

echo "== h. TLS under the hardened unit: the key handed over by LoadCredential=, a renewal by reload"
# The service's dynamic user cannot read a root-only key in /etc: systemd
# copies it into $CREDENTIALS_DIRECTORY, where a relative path finds it. The
# certificate is public and read from /etc, so a renewal that keeps the key
# (certbot --reuse-key) needs only a reload.
g install -d -m 0700 /etc/sockgate/tls
g openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj /CN=localhost/O=first -addext subjectAltName=DNS:localhost \
	-keyout /etc/sockgate/tls/key.pem -out /etc/sockgate/tls/cert.pem 2>/dev/null ||
	fail "openssl could not make a certificate in the guest"
g chmod 0755 /etc/sockgate/tls
g chmod 0644 /etc/sockgate/tls/cert.pem
g mkdir -p /etc/systemd/system/sockgate.service.d
printf '[Service]\nLoadCredential=tls-key:/etc/sockgate/tls/key.pem\n' |
	g install -m 0644 /dev/stdin /etc/systemd/system/sockgate.service.d/tls.conf
g systemctl daemon-reload
write_config "" ""
g sed -i 's|^);$|  , { name = "tls"; listen = "127.0.0.1:2325"; upstream = "127.0.0.1:8080"; credentials = "users";\n      tls = { certificate = "/etc/sockgate/tls/cert.pem"; key = "tls-key"; }; }\n);|' /etc/sockgate.conf
g timeout 60 systemctl start sockgate || fail "systemctl start sockgate with a tls gateway failed"
# The address is not in the certificate: sockgate-client refuses the server.
out=$(printf 'alice\n%s\n' "$PW" | g timeout 20 sockgate-client --tls --ca /etc/sockgate/tls/cert.pem \
	127.0.0.1 2325 2>&1) && fail "sockgate-client accepted a certificate for another name: $out"
[[ $out == *"certificate verify failed"* ]] || fail "no verification failure for a wrong name; got: $out"
tls_login() {
	printf 'alice\n%s\n%s\n' "$PW" "$1" | g timeout 20 sockgate-client --tls \
		--ca /etc/sockgate/tls/cert.pem --servername localhost 127.0.0.1 2325 2>&1
}
out=$(tls_login over-tls) || fail "sockgate-client --tls failed: $out"
[[ $out == *"[up1] I got your message: over-tls"* ]] || fail "no relay over TLS; got: $out"
inv=$(g systemctl show -P InvocationID sockgate)
poll_until 10 has_entries _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_LOGIN_OK SOCKGATE_GATEWAY=tls ||
	fail "no login-ok event for the tls gateway"
tls_field=$(journal _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_LOGIN_OK SOCKGATE_GATEWAY=tls |
	field_values SOCKGATE_TLS | tail -n 1)
[[ $tls_field == TLSv1.3\ * ]] || fail "SOCKGATE_TLS is \"$tls_field\", expected TLSv1.3 ..."
ok "logged in over TLS with the key from \$CREDENTIALS_DIRECTORY; SOCKGATE_TLS=\"$tls_field\""
subject_seen() {
	g sh -c 'openssl s_client -connect 127.0.0.1:2325 -servername localhost </dev/null 2>/dev/null |
		openssl x509 -noout -subject'
}
[[ $(subject_seen) == *"O = first"* ]] || fail "the first certificate is not served: $(subject_seen)"
g openssl req -x509 -new -key /etc/sockgate/tls/key.pem -days 30 -subj /CN=localhost/O=renewed \
	-addext subjectAltName=DNS:localhost -out /etc/sockgate/tls/cert.pem.new 2>/dev/null ||
	fail "openssl could not renew the certificate"
g chmod 0644 /etc/sockgate/tls/cert.pem.new
g mv /etc/sockgate/tls/cert.pem.new /etc/sockgate/tls/cert.pem
g timeout 60 systemctl reload sockgate || fail "systemctl reload sockgate failed"
[[ $(subject_seen) == *"O = renewed"* ]] || fail "after the reload: $(subject_seen), not the renewed one"
[[ $(g systemctl show -P InvocationID sockgate) == "$inv" ]] || fail "the reload restarted sockgate"
out=$(tls_login after-renewal) || fail "sockgate-client --tls after the renewal failed: $out"
[[ $out == *"[up1] I got your message: after-renewal"* ]] || fail "no relay after the renewal; got: $out"
ok "systemctl reload serves the renewed certificate"
g timeout 60 systemctl stop sockgate || fail "systemctl stop sockgate failed"

echo "== i. PAM under the hardened unit: pam_pwdfile reading a file handed over by LoadCredential="
pam_pwdfile=$(g sh -c 'ls /lib/*/security/pam_pwdfile.so /usr/lib/*/security/pam_pwdfile.so 2>/dev/null | head -n 1')
if [[ -z $pam_pwdfile ]]; then
	echo "SKIP (in this part): no pam_pwdfile.so (Debian package libpam-pwdfile)"
else
	# The shipped service denies everything: a login fails until a stack is chosen.
	g grep -q '^auth *requisite *pam_deny.so' /etc/pam.d/sockgate ||
		fail "cmake --install did not install the denying /etc/pam.d/sockgate"
	g sh -c "printf 'carol:%s\n' \"\$(printf '%s' '$PW' | openssl passwd -6 -stdin)\" >/etc/sockgate/pwdfile"
	g chmod 0600 /etc/sockgate/pwdfile
	printf '[Service]\nLoadCredential=pwdfile:/etc/sockgate/pwdfile\n' |
		g install -m 0644 /dev/stdin /etc/systemd/system/sockgate.service.d/pam.conf
	g systemctl daemon-reload
	g sed -i 's|^);$|  , { name = "pam"; listen = "127.0.0.1:2326"; upstream = "127.0.0.1:8080"; auth = "pam";\n      login = { failure_delay = 0; }; }\n);|' /etc/sockgate.conf
	g timeout 60 systemctl start sockgate || fail "systemctl start sockgate with a PAM gateway failed"
	out=$(printf 'carol\n%s\nvia-pam\n' "$PW" | g timeout 20 sockgate-client 127.0.0.1 2326 2>&1) || true
	[[ $out == *"incorrect"* ]] || fail "the shipped PAM service let carol in: $out"
	printf 'auth required pam_pwdfile.so pwdfile=/run/credentials/sockgate.service/pwdfile\naccount required pam_permit.so\n' |
		g install -m 0644 /dev/stdin /etc/pam.d/sockgate
	out=$(printf 'carol\n%s\nvia-pam\n' "$PW" | g timeout 20 sockgate-client 127.0.0.1 2326 2>&1) ||
		fail "sockgate-client through the PAM gateway failed: $out"
	[[ $out == *"[up1] I got your message: via-pam"* ]] || fail "no relay after a PAM login; got: $out"
	inv=$(g systemctl show -P InvocationID sockgate)
	poll_until 10 has_entries _SYSTEMD_INVOCATION_ID="$inv" MESSAGE_ID=$ID_LOGIN_OK SOCKGATE_GATEWAY=pam ||
		fail "no login-ok event for the PAM gateway"
	ok "the hardened unit logs carol in through PAM (pam_pwdfile, a credential file)"
	g timeout 60 systemctl stop sockgate || fail "systemctl stop sockgate failed"
fi

echo "== j. operating it under the hardened unit: sockgatectl, metrics, a recording"
write_config "" ""
g sed -i -e 's|^gateways = ($|control = { socket = "/run/sockgate/control"; group = "adm"; };\nmetrics = { listen = "127.0.0.1:9323"; };\ngateways = (|' \
	-e 's|^    credentials = "users";$|    credentials = "users";\n    record = { directory = "/var/lib/sockgate/recordings"; };|' \
	/etc/sockgate.conf
g timeout 60 systemctl start sockgate || fail "systemctl start sockgate with control, metrics and record failed"
g useradd -M -G adm sgoperator 2>/dev/null || true
g useradd -M sgoutsider 2>/dev/null || true
coproc OPS { g timeout 60 sockgate-client 127.0.0.1 2323 2>&1; }
# shellcheck disable=SC2153 # set by coproc
ops_out=${OPS[0]} ops_in=${OPS[1]} ops_pid=$OPS_PID
printf 'alice\n%s\nrecorded line\n' "$PW" >&"$ops_in"
expect_line "$ops_out" "[up1] I got your message: recorded line" 20 || fail "the operated session does not relay"
# One command answers who is connected, since when, to what: as root and as a
# member of the control group, not as anyone else.
out=$(g sockgatectl sessions 2>&1) || fail "sockgatectl sessions as root failed: $out"
[[ $out == *alice*127.0.0.1:8080*relaying* ]] || fail "sockgatectl sessions does not list alice's session: $out"
out=$(g setpriv --reuid=sgoperator --regid=sgoperator --init-groups sockgatectl sessions 2>&1) ||
	fail "sockgatectl as a member of adm failed: $out"
[[ $out == *alice* ]] || fail "sockgatectl as a member of adm does not list alice: $out"
if out=$(g setpriv --reuid=sgoutsider --regid=sgoutsider --init-groups sockgatectl sessions 2>&1); then
	fail "sockgatectl answered a user outside the control group: $out"
fi
ok "sockgatectl sessions lists alice as root and for group adm, refuses others ($(tr -d '\n' <<<"$out"))"
metrics=$(g python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9323/metrics", timeout=10).read().decode(), end="")') ||
	fail "no answer from the metrics listener"
grep -q '^sockgate_logins_total{gateway="demo",result="ok"} 1$' <<<"$metrics" ||
	fail "the metrics do not count the login: $(grep logins_total <<<"$metrics")"
grep -q '^process_open_fds [0-9]' <<<"$metrics" || fail "no process figures under the unit's ProcSubset=pid"
grep -q '^process_start_time_seconds [0-9]' <<<"$metrics" || fail "no process start time under ProcSubset=pid"
ok "GET /metrics counts the login and shows the process figures"
out=$(g sockgatectl kill --user alice 2>&1) || fail "sockgatectl kill --user alice failed: $out"
wait "$ops_pid" || true # the client ends with the session
poll_until 10 has_entries -u sockgate MESSAGE_ID=$ID_SESSION_CLOSED SOCKGATE_USER=alice REASON="killed by sockgatectl, uid 0" ||
	fail "no session-closed event with the kill's reason"
sid=$(journal -u sockgate MESSAGE_ID=$ID_SESSION_CLOSED SOCKGATE_USER=alice REASON="killed by sockgatectl, uid 0" | field_values SOCKGATE_SESSION | tail -n 1)
rec=$(journal -u sockgate SOCKGATE_SESSION="$sid" | field_values SOCKGATE_RECORDING | grep . | tail -n 1)
[[ $rec == /var/lib/sockgate/recordings/*"$sid".cast ]] || fail "session $sid names no recording in the journal: \"$rec\""
rec_done() { g grep -q '"session closed' "$rec"; }
poll_until 10 rec_done || fail "the recording $rec was not closed"
[[ $(g stat -c %a "$rec") == 600 ]] || fail "the recording is mode $(g stat -c %a "$rec"), not 600"
g grep -q -- "$PW" "$rec" && fail "the password is in the recording"
g grep -q 'recorded line' "$rec" || fail "the relayed line is not in the recording"
ok "journalctl SOCKGATE_SESSION=$sid tells the session's story and names its recording, mode 0600, no password"
g timeout 60 systemctl stop sockgate || fail "systemctl stop sockgate failed"

echo "== k. restarts and crashes drop no relayed session (systemd's fd store)"
write_config "" ""
g sed -i -e 's|upstream = ( "127.0.0.1:8080" );|upstream = ( "127.0.0.1:8081" );|' \
	-e 's|^gateways = ($|control = { socket = "/run/sockgate/control"; };\ngateways = (|' /etc/sockgate.conf
g systemd-run --quiet --unit=sockgate-echo -p Type=exec -p DynamicUser=yes \
	"$(g sh -c 'command -v sockgate-server')" -l 127.0.0.1 -p 8081 --echo -m 5000 -i 0 ||
	fail "systemd-run could not start the echo upstream"
poll_until 10 port_listening 8081 || fail "the echo upstream is not listening on 127.0.0.1:8081"
g timeout 60 systemctl start sockgate || fail "systemctl start sockgate failed"
# bench/carry.sh runs this part with 1,000 (SOCKGATE_CARRY_SESSIONS).
CARRY_N=${SOCKGATE_CARRY_SESSIONS:-50}
coproc CARRY { g python3 "$src/tests/systemd/carry_client.py" 127.0.0.1 2323 alice "$PW" "$CARRY_N" 2>&1; }
# shellcheck disable=SC2153 # set by coproc
carry_out=${CARRY[0]} carry_in=${CARRY[1]} carry_pid=$CARRY_PID
# PID 1's CPU time (ticks of user and system) shows what storing costs it.
pid1_ticks() { g awk '{ print $14 + $15 }' /proc/1/stat; }
ticks_before=$(pid1_ticks)
t0=$(date +%s%N)
expect_line "$carry_out" "ready $CARRY_N" 600 || fail "$CARRY_N sessions did not log in"
echo "   $CARRY_N sessions logged in and stored in $((($(date +%s%N) - t0) / 1000000)) ms; PID 1 used $(($(pid1_ticks) - ticks_before)) ticks of CPU ($(getconf CLK_TCK)/s) meanwhile"
main_pid() { g systemctl show -P MainPID sockgate; }
pid_before=$(main_pid)
# A client at the user name prompt when the restart comes is told to come back.
coproc PROMPTED { g timeout 60 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", 2323), timeout=50)
buf = b""
while b"Username: " not in buf:
    buf += s.recv(100)
print("prompted", flush=True)
while True:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode(errors="replace").replace("\n", "|"), flush=True)
' 2>&1; }
# A copy: bash closes a coprocess's descriptors when it exits, and this one
# exits as soon as it has printed what it was told.
# shellcheck disable=SC2153 # set by coproc
exec {prompted_out}<&"${PROMPTED[0]}"
expect_line "$prompted_out" "prompted" 20 || fail "no prompt for the client logging in"
# And a half-closed session: its client, with a small receive buffer, has
# sent and shut its side and reads nothing, so the answer waits in sockgate
# and the kernel across the restart; it must arrive whole.
printf 'halfclose 262144\n' >&"$carry_in"
expect_line "$carry_out" "halfclosed" 30 || fail "the half-closing session did not start"
# Data moves both ways while systemd replaces the process.
printf 'pump 3\n' >&"$carry_in"
t0=$(date +%s%N)
g timeout 60 systemctl restart sockgate || fail "systemctl restart sockgate failed"
restart_ms=$((($(date +%s%N) - t0) / 1000000))
expect_line "$carry_out" "pumped" 60 || fail "the sessions did not relay through systemctl restart"
printf 'drain\n' >&"$carry_in"
IFS= read -r -t 120 -u "$carry_out" line || fail "no answer to drain"
[[ $line == "exact $CARRY_N "* ]] ||
	fail "not every session got back exactly what it sent through the restart: $line"
echo "   $line bytes each way in all; systemctl restart took ${restart_ms} ms"
[[ $(main_pid) != "$pid_before" ]] || fail "systemctl restart did not replace the process"
took_over() { g journalctl -u sockgate --no-pager -o cat | grep -q "$1"; }
poll_until 10 took_over "took over $CARRY_N relayed sessions from the process before" ||
	fail "no \"took over $CARRY_N relayed sessions\" in the journal"
printf 'readhalf\n' >&"$carry_in"
expect_line "$carry_out" "halfexact 262144" 60 ||
	fail "the half-closed session did not get all 262144 bytes back through the restart"
expect_line "$prompted_out" "The service is restarting; please reconnect." 20 ||
	fail "the client logging in was not told to reconnect"
ok "$CARRY_N sessions relayed byte-exact through systemctl restart (PID $pid_before -> $(main_pid)); the one logging in was told to reconnect"
exec {prompted_out}<&-

pid_before=$(main_pid)
printf 'pump 4 any\n' >&"$carry_in"
t0=$(date +%s%N)
g kill -SEGV "$pid_before"
restarted() { local p; p=$(main_pid); [[ $p != 0 && $p != "$pid_before" ]] && is_state sockgate active; }
poll_until 30 restarted || fail "sockgate did not come back after SIGSEGV: $(active_state sockgate)"
echo "   back $((($(date +%s%N) - t0) / 1000000)) ms after the SIGSEGV (RestartSec=1s)"
expect_line "$carry_out" "pumped" 60 || fail "the sessions broke through the crash"
printf 'resync\n' >&"$carry_in"
expect_line "$carry_out" "resynced $CARRY_N" 60 || fail "not every session relays after the crash"
printf 'pump 1\ndrain\n' >&"$carry_in"
expect_line "$carry_out" "exact $CARRY_N" 60 || fail "the sessions are not byte-exact after the crash"
poll_until 10 took_over "ended without handing them over" ||
	fail "the journal does not say that the crash lost the bytes in flight"
ok "$CARRY_N sessions still connected after kill -SEGV (PID $pid_before -> $(main_pid)), relaying byte-exact again"
pid_before=$(main_pid)
printf 'pump 2\n' >&"$carry_in"
out=$(g sockgatectl restart 2>&1) || fail "sockgatectl restart failed: $out"
poll_until 30 restarted || fail "sockgate did not come back after sockgatectl restart: $(active_state sockgate)"
expect_line "$carry_out" "pumped" 60 || fail "the sessions broke through sockgatectl restart"
printf 'drain\n' >&"$carry_in"
expect_line "$carry_out" "exact $CARRY_N" 60 || fail "not byte-exact through sockgatectl restart"
ok "sockgatectl restart: $CARRY_N sessions byte-exact (PID $pid_before -> $(main_pid), exit 75 restarted by systemd)"
exec {carry_in}>&-
wait "$carry_pid" || true
g timeout 60 systemctl stop sockgate || fail "systemctl stop sockgate failed"

guest_stop
ok "the guest powered off"
echo "PASS"
