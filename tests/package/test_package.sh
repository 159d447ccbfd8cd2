#!/bin/bash
# test_package.sh SOURCE_DIR: the Debian package as a user gets it. Builds it
# with dpkg-buildpackage from a clean copy of the tree (tracked and untracked
# files, no build directories), and again with the next version; runs lintian
# (no error, no warning); then, in a guest systemd booted by
# tests/systemd/guest.sh, installs it with apt-get, checks that the service
# waits for its credentials instead of failing, creates them, starts it, logs
# in through it, edits /etc/sockgate.conf, upgrades with a session open (it
# says what became of the session), purges; reinstalls and purges again with
# a session recording, which must stay. Exits 77 (skipped) where it
# cannot run: not root, or debhelper, lintian or the build dependencies
# missing; in CI (CI=true) those are failures.
# shellcheck disable=SC2016 # dpkg-query formats and scripts run in the guest are literal
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 && -f $1/debian/control ]] || {
	echo "usage: $0 SOURCE_DIR (a sockgate tree with debian/)" >&2
	exit 2
}
src=$(cd "$1" && pwd)

PW=pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
# What the administrator's edit of /etc/sockgate.conf makes every client see.
EDITED='Welcome: this line was edited by the administrator.'
ID_SESSION_CLOSED=2e852d806caf449ead0c66a7d273949b # src/core/log.c

unavailable()
{
	if [[ ${CI:-} == true ]]; then
		echo "FAIL: the package test must run in CI: $*" >&2
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}

[[ $(id -u) == 0 ]] || unavailable "needs root (it boots a guest systemd and installs into it)"
# shellcheck source=../systemd/guest.sh
source "$here/../systemd/guest.sh"
# Before minutes of building: can a guest boot here at all (skips or fails).
guest_require
for cmd in dpkg-buildpackage dpkg-checkbuilddeps dpkg-deb dh dh_installsystemd lintian tar; do
	command -v "$cmd" >/dev/null ||
		unavailable "$cmd not found (scripts/deps test installs debhelper, dpkg-dev and lintian)"
done
missing=$(cd "$src" && dpkg-checkbuilddeps 2>&1) ||
	unavailable "build dependencies missing: ${missing##*: } (scripts/deps build)"

# What a run killed outright (SIGKILL: no trap ran) left behind.
for d in "${TMPDIR:-/tmp}"/sockgate-package.*.*; do
	[[ -d $d ]] || continue
	p=${d##*/sockgate-package.}
	kill -0 "${p%%.*}" 2>/dev/null || rm -rf "$d"
done
work=$(mktemp -d "${TMPDIR:-/tmp}/sockgate-package.$$.XXXXXX")
# apt-get reads the .deb as its own unprivileged user where it can.
chmod 0755 "$work"
on_exit()
{
	local rc=$?
	trap - EXIT
	guest_stop
	rm -rf "$work"
	exit "$rc"
}
trap on_exit EXIT

g() { guest_run "$@"; }
ok() { echo "ok: $*"; }
t0=$SECONDS
took() { echo "   ($((SECONDS - t0)) s so far)"; }

fail()
{
	echo "FAIL: $*" >&2
	if [[ -n $GUEST_PID ]]; then
		echo "--- systemctl status sockgate sockgate-upstream" >&2
		g systemctl status --no-pager -l sockgate sockgate-upstream >&2 || true
		echo "--- journal (last 60 lines)" >&2
		g journalctl --no-pager -n 60 -o short-monotonic >&2 || true
	fi
	exit 1
}

# copy_tree DEST: the source tree as a checkout has it: tracked files (as they
# are in the work tree) and untracked ones that .gitignore does not exclude;
# never build directories or a previous package build's leftovers.
copy_tree()
{
	local dest=$1 f
	mkdir -p "$dest"
	if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$src" ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do
				# A tracked file deleted in the work tree is not part of it.
				if [[ -e $src/$f || -L $src/$f ]]; then
					printf '%s\0' "$f"
				fi
			done | tar -C "$src" --null -T - -cf - | tar -C "$dest" -xf -
	else
		tar -C "$src" --exclude='./build*' --exclude='./obj-*' --exclude=./.git \
			--exclude=./debian/.debhelper --exclude=./debian/sockgate \
			--exclude=./debian/files --exclude='./debian/*.substvars' \
			--exclude=./debian/debhelper-build-stamp -cf - . | tar -C "$dest" -xf -
	fi
}

# build_package DIR: dpkg-buildpackage -b -us -uc in DIR/sockgate; the
# .deb, .changes and .buildinfo land in DIR.
build_package()
{
	local dir=$1 start=$SECONDS
	(cd "$dir/sockgate" &&
		DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
			dpkg-buildpackage -b -us -uc) >"$dir/build.log" 2>&1 || {
		tail -n 40 "$dir/build.log" >&2
		fail "dpkg-buildpackage failed in $dir/sockgate (the last lines of its log above)"
	}
	ok "built $(cd "$dir" && echo *.deb) in $((SECONDS - start)) s"
}

# bump_version DIR VERSION: the tree in DIR at VERSION, in the three places
# tests/check_version.sh compares; a native package, so no Debian revision.
bump_version()
{
	local dir=$1 v=$2 who
	sed -i -E "s/^(project\(sockgate VERSION )[0-9.]+/\1$v/" "$dir/CMakeLists.txt"
	# Half done, the tree disagrees with itself: the check must say so.
	if bash "$src/tests/check_version.sh" "$dir" >"$work/version-check.log" 2>&1; then
		cat "$work/version-check.log" >&2
		fail "tests/check_version.sh accepts a tree whose CMakeLists.txt alone says $v"
	fi
	who=$(sed -n '/^ -- /{s/^ -- \(.*>\)  .*/\1/p;q}' "$dir/debian/changelog")
	{
		printf 'sockgate (%s) unstable; urgency=medium\n\n' "$v"
		printf '  * Rebuilt by tests/package/test_package.sh to test upgrades.\n\n'
		printf ' -- %s  %s\n\n' "$who" "$(date -R)"
		cat "$dir/debian/changelog"
	} >"$dir/debian/changelog.new"
	mv "$dir/debian/changelog.new" "$dir/debian/changelog"
	awk -v v="$v" -v d="$(date +%F)" '
		!done && /^## \[/ { print "## [" v "] - " d "\n\n### Changed\n\n- A rebuild to test upgrades.\n"; done = 1 }
		{ print }' "$dir/CHANGELOG.md" >"$dir/CHANGELOG.md.new"
	mv "$dir/CHANGELOG.md.new" "$dir/CHANGELOG.md"
	bash "$src/tests/check_version.sh" "$dir" >"$work/version-check.log" 2>&1 || {
		cat "$work/version-check.log" >&2
		fail "tests/check_version.sh rejects the tree bumped to $v"
	}
}

# package_files DEB, package_dirs DEB: the files (and symlinks), or the
# directories, DEB holds, one a line.
package_files()
{
	dpkg-deb -c "$1" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\./|/|'
}
package_dirs()
{
	dpkg-deb -c "$1" | awk '$1 ~ /^d/ { print $6 }' | sed 's|^\./|/|; s|/$||' | grep .
}

# existing_files: of the paths on stdin, those that exist in the guest as
# files or symlinks (one guest command for the whole list).
existing_files()
{
	g sh -c 'while read -r p; do if [ -f "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done'
}

v1=$(sed -nE 's/^project\(sockgate VERSION ([0-9]+\.[0-9]+)\.([0-9]+).*/\1.\2/p' "$src/CMakeLists.txt")
[[ -n $v1 ]] || fail "no project(sockgate VERSION x.y.z) in $src/CMakeLists.txt"
v2=${v1%.*}.$((${v1##*.} + 1))
arch=$(dpkg --print-architecture)

echo "== building sockgate $v1 from a clean copy of $src"
copy_tree "$work/v1/sockgate"
[[ ! -e $work/v1/sockgate/build && ! -e $work/v1/sockgate/CMakeCache.txt ]] ||
	fail "the copy of the tree holds a build directory"
build_package "$work/v1"
deb1=$work/v1/sockgate_${v1}_$arch.deb
[[ -f $deb1 ]] || fail "no $deb1; dpkg-buildpackage made: $(ls "$work/v1")"
took

echo "== lintian"
# The .changes names the .deb (and the -dbgsym one) and the .buildinfo.
# lintian unpacks what it checks, so not as root (it says so itself).
lintian_start=$SECONDS
if ! lintian_out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/nonexistent \
	lintian -I --fail-on error,warning "$work/v1/sockgate_${v1}_$arch.changes" 2>&1); then
	printf '%s\n' "$lintian_out" | sed 's/^/  | /'
	fail "lintian reports errors or warnings"
fi
printf '%s\n' "$lintian_out" | grep -v '^$' | sed 's/^/  | /' || true
ok "lintian: no error, no warning ($(grep -c '^[IP]: ' <<<"$lintian_out" || true) info tags) in $((SECONDS - lintian_start)) s"
took

echo "== building sockgate $v2, the upgrade"
copy_tree "$work/v2/sockgate"
bump_version "$work/v2/sockgate" "$v2"
ok "tests/check_version.sh: rejects a half-bumped tree, accepts $v2 in all three places"
build_package "$work/v2"
deb2=$work/v2/sockgate_${v2}_$arch.deb
[[ -f $deb2 ]] || fail "no $deb2; dpkg-buildpackage made: $(ls "$work/v2")"
took

echo "== booting a guest systemd"
guest_start "$work"
ok "guest systemd is up (PID $GUEST_PID on the host)"
# The host's policy-rc.d (a container's "start nothing") would keep postinst
# from starting the service; the guest is a machine with a working init.
g rm -f /usr/sbin/policy-rc.d
# A `cmake --install` on the host would show through the overlay and make the
# package's conffiles look like the administrator's: this guest starts clean.
if g dpkg-query -W sockgate >/dev/null 2>&1; then
	fail "sockgate is already installed in the guest (dpkg)"
fi
for p in $(package_files "$deb1" | existing_files); do
	echo "NOTE: $p exists before the installation (not from this package): removed in the guest" >&2
	g rm -f "$p"
done
took

echo "== a. apt-get install ./sockgate_${v1}_$arch.deb"
# stdin is /dev/null: a question from dpkg fails the test instead of hanging.
g env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb1" \
	</dev/null >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "apt-get install $deb1 failed"; }
sed -n 's/^\(sockgate\.socket .*\)/  | postinst: \1/p' "$work/install.log"
[[ $(g dpkg-query -W -f='${Status} ${Version}' sockgate) == "install ok installed $v1" ]] ||
	fail "dpkg says: $(g dpkg-query -W -f='${Status} ${Version}' sockgate)"
out=$(g sockgate -V) || fail "sockgate -V failed: $out"
[[ $out == "sockgate $v1" ]] || fail "sockgate -V says \"$out\", expected \"sockgate $v1\""
for f in /usr/sbin/sockgate /usr/sbin/sockgatectl /usr/bin/sockgate-passwd /usr/bin/sockgate-server \
	/usr/bin/sockgate-client /usr/bin/sockgate-verify /lib/systemd/system/sockgate.service \
	/lib/systemd/system/sockgate.socket /lib/systemd/system/sockgate.service.d/wait-for-users.conf \
	/usr/lib/systemd/catalog/sockgate.catalog /etc/sockgate.conf /etc/pam.d/sockgate \
	/usr/share/man/man8/sockgate.8.gz /usr/share/man/man5/sockgate.conf.5.gz \
	/usr/share/bash-completion/completions/sockgate /usr/share/bash-completion/completions/sockgatectl \
	/usr/share/bash-completion/completions/sockgate-passwd \
	/usr/share/bash-completion/completions/sockgate-server \
	/usr/share/bash-completion/completions/sockgate-client \
	/usr/share/doc/sockgate/examples/fail2ban/filter.d/sockgate.conf \
	/usr/share/doc/sockgate/examples/fail2ban/jail.d/sockgate.conf \
	/usr/share/doc/sockgate/copyright /usr/share/doc/sockgate/README.Debian; do
	g test -e "$f" || fail "the package did not install $f"
done
g test -d /etc/sockgate || fail "the package did not make /etc/sockgate"
conffiles=$(g dpkg-query -W -f='${Conffiles}' sockgate)
for f in /etc/sockgate.conf /etc/pam.d/sockgate; do
	grep -q "^ $f " <<<"$conffiles" || fail "$f is not a conffile: $conffiles"
done
# systemd's dpkg trigger indexes the catalog: journalctl -x explains events.
# (Into a variable first: grep -q would stop reading, and pipefail would
# count journalctl's SIGPIPE.)
catalog=$(g journalctl --list-catalog --no-pager)
grep -q "^$ID_SESSION_CLOSED " <<<"$catalog" ||
	fail "journalctl does not know sockgate's catalog after the installation"
ok "installed $v1: programs, units, drop-in, catalog (indexed), man pages, completions, examples; conffiles: /etc/sockgate.conf, /etc/pam.d/sockgate"

echo "== b. a fresh installation waits for its credentials"
[[ $(g systemctl is-enabled sockgate.service) == enabled ]] ||
	fail "sockgate.service is $(g systemctl is-enabled sockgate.service), expected enabled"
[[ $(g systemctl is-enabled sockgate.socket) == disabled ]] ||
	fail "sockgate.socket is $(g systemctl is-enabled sockgate.socket), expected disabled"
[[ $(g systemctl is-active sockgate.socket) == inactive ]] ||
	fail "sockgate.socket is $(g systemctl is-active sockgate.socket), expected inactive"
if g systemctl is-failed --quiet sockgate.service; then
	fail "sockgate.service is failed after the installation"
fi
[[ $(g systemctl is-active sockgate.service) == inactive ]] ||
	fail "sockgate.service is $(g systemctl is-active sockgate.service) without credentials, expected inactive"
# postinst asked for a start: the condition answered, and status says which.
[[ $(g systemctl show -P ConditionResult sockgate.service) == no ]] ||
	fail "no start was attempted, or its condition held (ConditionResult=$(g systemctl show -P ConditionResult sockgate.service))"
status=$(g systemctl status --no-pager sockgate.service 2>&1) || true
# "Condition: start condition failed at ...", and the journal's line: "...
# skipped because of an unmet condition check (ConditionPathExists=...)".
[[ $status == *"start condition failed"* && $status == *"ConditionPathExists=/etc/sockgate/users"* ]] ||
	fail "systemctl status does not say it waits for /etc/sockgate/users: $status"
printf '%s\n' "$status" | sed 's/^/  | /'
ok "sockgate.service enabled, inactive (not failed), waiting for /etc/sockgate/users; sockgate.socket disabled"

echo "== c. credentials, start, log in"
printf '%s\n' "$PW" | g sockgate-passwd -c --stdin /etc/sockgate/users alice >/dev/null ||
	fail "sockgate-passwd -c /etc/sockgate/users alice failed"
g systemd-run --quiet --unit=sockgate-upstream -p Type=exec -p DynamicUser=yes \
	/usr/bin/sockgate-server -l 127.0.0.1 -p 8080 --tag up1 || fail "systemd-run could not start the upstream"
port_listening() { [[ -n $(g ss -Hltn "sport = :$1") ]]; }
poll_until 10 port_listening 8080 || fail "the upstream sockgate-server does not listen on 127.0.0.1:8080"
g timeout 60 systemctl start sockgate || fail "systemctl start sockgate failed"
[[ $(g systemctl is-active sockgate) == active ]] || fail "sockgate is $(g systemctl is-active sockgate) after start"
# login LINE: logs in as alice on the shipped demo gateway, sends LINE.
login() { printf 'alice\n%s\n%s\n' "$PW" "$1" | g timeout 20 sockgate-client 127.0.0.1 2323 2>&1; }
out=$(login hello) || fail "sockgate-client failed: $out"
[[ $out == *"You are now logged in."* && $out == *"[up1] I got your message: hello"* ]] ||
	fail "no login and relay through the shipped configuration; got: $out"
ok "the shipped configuration's demo gateway logs alice in and relays to 127.0.0.1:8080"

echo "== d. the administrator edits /etc/sockgate.conf"
g sed -i -E "s|^( *success_message = ).*|\1\"$EDITED\\\\n\";|" /etc/sockgate.conf
g grep -qF "success_message = \"$EDITED\\n\";" /etc/sockgate.conf ||
	fail "could not edit success_message in /etc/sockgate.conf"
g timeout 60 systemctl reload sockgate || fail "systemctl reload sockgate failed"
out=$(login edited) || fail "sockgate-client after the edit failed: $out"
[[ $out == *"$EDITED"* ]] || fail "the edited success_message is not in effect; got: $out"
ok "edited success_message in effect after a reload"
took

echo "== e. upgrade to $v2 with a logged-in session"
# A client on two fifos (not a coprocess, whose descriptors bash closes when
# it exits: the upgrade may well end this one). The client opens its input,
# then its output; this shell opens them in the same order.
mkfifo "$work/session.in" "$work/session.out"
g timeout 300 sockgate-client 127.0.0.1 2323 <"$work/session.in" >"$work/session.out" 2>&1 &
s_pid=$!
exec {s_in}>"$work/session.in" {s_out}<"$work/session.out"
printf 'alice\n%s\n' "$PW" >&"$s_in"
expect_line "$s_out" "$EDITED" 20 || fail "the session did not log in"
printf 'before upgrade\n' >&"$s_in"
expect_line "$s_out" "[up1] I got your message: before upgrade" 10 || fail "the session does not relay"
pid_before=$(g systemctl show -P MainPID sockgate)
inv_before=$(g systemctl show -P InvocationID sockgate)
upgrade_start=$SECONDS
g env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb2" \
	</dev/null >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log" >&2; fail "apt-get install $deb2 (the upgrade) failed"; }
upgrade_s=$((SECONDS - upgrade_start))
# The session opened before the upgrade goes on: postinst restarted the
# service, and systemd's fd store carried the session over (sockgate(8),
# RESTARTS, UPGRADES AND CRASHES).
(printf 'after upgrade\n' >&"$s_in") 2>/dev/null || true
if expect_line "$s_out" "[up1] I got your message: after upgrade" 10 2>"$work/session.seen"; then
	session="survived the upgrade and still relays"
else
	# The last session the daemon before the upgrade closed is this one.
	reason=$(g journalctl --no-pager -o export _SYSTEMD_INVOCATION_ID="$inv_before" \
		MESSAGE_ID=$ID_SESSION_CLOSED SOCKGATE_USER=alice 2>/dev/null | sed -n 's/^REASON=//p' | sed -n '$p') || true
	seen=$(sed -n 's/^  | //p' "$work/session.seen" | tr '\n' '|')
	fail "the session opened before the upgrade did not survive it (session closed: reason \"${reason:-not logged}\"; the client saw: \"${seen%|}\")"
fi
[[ $(g dpkg-query -W -f='${Status} ${Version}' sockgate) == "install ok installed $v2" ]] ||
	fail "after the upgrade dpkg says: $(g dpkg-query -W -f='${Status} ${Version}' sockgate)"
out=$(g sockgate -V) || fail "sockgate -V failed after the upgrade: $out"
[[ $out == "sockgate $v2" ]] || fail "after the upgrade sockgate -V says \"$out\", expected \"sockgate $v2\""
g grep -qF "$EDITED" /etc/sockgate.conf || fail "the upgrade lost the edit of /etc/sockgate.conf"
leftovers=$(g sh -c 'ls /etc/sockgate.conf.dpkg-* /etc/pam.d/sockgate.dpkg-* 2>/dev/null' || true)
[[ -z $leftovers ]] || fail "the upgrade left $leftovers"
# postinst restarts the service synchronously (Type=notify): it is up now.
[[ $(g systemctl is-active sockgate) == active ]] ||
	fail "sockgate is $(g systemctl is-active sockgate) after the upgrade"
pid_after=$(g systemctl show -P MainPID sockgate)
running=$(g sockgatectl status 2>&1) || fail "sockgatectl status failed after the upgrade: $running"
grep -Eq "version[[:space:]]+$v2\b" <<<"$running" ||
	fail "the running daemon is not version $v2: $running"
out=$(login after-upgrade) || fail "sockgate-client after the upgrade failed: $out"
[[ $out == *"$EDITED"* && $out == *"[up1] I got your message: after-upgrade"* ]] ||
	fail "after the upgrade a login does not see the edited configuration or relay; got: $out"
ok "upgraded in $upgrade_s s: dpkg and sockgate -V say $v2, the running daemon (PID $pid_before -> $pid_after) is $v2, the edit of /etc/sockgate.conf is kept and in effect"
ok "the session logged in before the upgrade $session"
exec {s_in}>&-
# The client ends with its input (or has ended with the session): its output
# reaches end of file. One still there after that is left to guest_stop.
rc=0
while :; do
	if IFS= read -r -t 10 -u "$s_out" _; then continue; else rc=$?; fi
	break
done
if ((rc > 128)); then
	echo "NOTE: the session's client did not end within 10 s of its input ending" >&2
else
	wait "$s_pid" || true
fi
exec {s_out}<&-
took

# check_purged WHAT: what the package made is gone after a purge.
check_purged()
{
	local what=$1 state left u
	state=$(g dpkg-query -W -f='${Status}' sockgate 2>/dev/null || true)
	[[ -z $state || $state == *not-installed ]] || fail "after the $what dpkg says: $state"
	left=$(package_files "$deb2" | existing_files)
	[[ -z $left ]] || fail "still there after the $what: $(tr '\n' ' ' <<<"$left")"
	# Shared directories (/usr/bin, /etc/pam.d) stay; sockgate's own go, but
	# /etc/sockgate, which holds the administrator's users file.
	left=$(package_dirs "$deb2" | grep sockgate | grep -vx /etc/sockgate |
		g sh -c 'while read -r p; do if [ -d "$p" ]; then echo "$p"; fi; done')
	[[ -z $left ]] || fail "directories still there after the $what: $(tr '\n' ' ' <<<"$left")"
	for u in sockgate.service sockgate.socket; do
		[[ $(g systemctl show -P LoadState "$u") == not-found ]] ||
			fail "systemd still knows $u after the $what ($(g systemctl show -P LoadState "$u"))"
	done
	[[ -z $(g find /etc/systemd/system -name 'sockgate*' -print -quit) ]] ||
		fail "unit symlinks are left after the $what: $(g find /etc/systemd/system -name 'sockgate*')"
	if g test -e /var/lib/systemd/deb-systemd-helper-enabled/sockgate.service.dsh-also; then
		fail "deb-systemd-helper still remembers sockgate.service after the $what"
	fi
	if g pgrep -x sockgate >/dev/null; then
		fail "a sockgate process still runs after the $what"
	fi
	# The administrator's credentials are theirs: kept, with their directory.
	g test -f /etc/sockgate/users || fail "the $what removed the administrator's /etc/sockgate/users"
}

# purge LOG: apt-get purge sockgate, its notes (dpkg's warnings, postrm's) shown.
purge()
{
	g env DEBIAN_FRONTEND=noninteractive apt-get purge -y sockgate </dev/null >"$1" 2>&1 ||
		{ cat "$1" >&2; fail "apt-get purge sockgate failed"; }
	grep -E '^(dpkg: warning|sockgate:)' "$1" | sed 's/^/  | /' || true
}

echo "== f. apt-get purge sockgate"
g systemctl stop sockgate-upstream || true
echo "   the service's state directory before the purge: $(g find /var/lib/private/sockgate 2>/dev/null | tr '\n' ' ')"
purge "$work/purge.log"
check_purged purge
for d in /var/lib/sockgate /var/lib/private/sockgate; do
	if g test -e "$d" -o -L "$d"; then
		fail "$d (no recordings, only the daemon's state) is still there after the purge"
	fi
done
ok "purged: files, conffiles, units (not-found), enablement and the state directory are gone; /etc/sockgate/users (the administrator's) is kept"
took

echo "== g. reinstall, then purge with a session recording"
g env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb2" \
	</dev/null >"$work/reinstall.log" 2>&1 || { cat "$work/reinstall.log" >&2; fail "apt-get install $deb2 after the purge failed"; }
# The kept /etc/sockgate/users meets the start condition: postinst started it.
[[ $(g systemctl is-active sockgate) == active ]] ||
	fail "reinstalled over a kept /etc/sockgate/users, sockgate is $(g systemctl is-active sockgate), not active"
g test -d /var/lib/sockgate/recordings || fail "the service made no /var/lib/sockgate/recordings"
# A recording as the recorder names them (the gateway's would hold a session).
rec=/var/lib/sockgate/recordings/sgtest-0000000000000001.cast
printf '{"version": 2, "width": 80, "height": 24}\n' | g install -m 0600 /dev/stdin "$rec"
purge "$work/purge2.log"
grep -q '^sockgate: kept the session recordings in /var/lib/private/sockgate/recordings' "$work/purge2.log" ||
	fail "the purge does not say that it kept the recordings: $(cat "$work/purge2.log")"
check_purged "second purge"
kept=$(g find /var/lib/private/sockgate ! -type d | tr '\n' ' ')
[[ $kept == "/var/lib/private/sockgate/recordings/${rec##*/} " ]] ||
	fail "the purge kept \"$kept\" in the state directory, expected the recording alone"
g test -f "$rec" || fail "/var/lib/sockgate no longer leads to the kept recording"
ok "reinstalled: active at once; purged again: the recording (and the way to it) kept, the daemon's state gone"
took

guest_stop
ok "the guest powered off"
echo "PASS ($((SECONDS - t0)) s)"
