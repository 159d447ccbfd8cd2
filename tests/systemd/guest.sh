# shellcheck shell=bash
# guest.sh: a real systemd as PID 1 in fresh namespaces, for tests. Source it,
# then: guest_start [SHARED_DIR...]; guest_run CMD...; guest_stop (also run on
# exit by the trap this file installs). Needs root, cgroup2, unshare, nsenter.
#
# The guest sees the host's / through an overlay whose upper layer is a tmpfs,
# has its own mount, PID, cgroup, UTS, IPC and network namespaces (loopback
# only), and its own cgroup under the cgroup2 mount: nothing it does reaches
# the host's systemd, network or files. SHARED_DIRs (the source and build
# trees) appear at their own paths, overlaid the same way.
#
# Without root, cgroup2 or namespaces a test is skipped (exit 77), unless CI=true:
# then it fails, saying why.

GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
GUEST_BOOT_TIMEOUT_S=${GUEST_BOOT_TIMEOUT_S:-30}
GUEST_STOP_TIMEOUT_S=${GUEST_STOP_TIMEOUT_S:-30}

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_STATE=        # host directory: fifos, logs, the guest's mount points
GUEST_CG=           # the guest's cgroup (host path)
GUEST_HOME_CG=      # where unshare goes back to: this script's own cgroup
GUEST_UNSHARE_PID=  # unshare, our child
GUEST_PID=          # the guest's PID 1 (systemd), as the host sees it
GUEST_EXIT_FD=      # read end of a pipe only unshare holds open: EOF = guest gone
GUEST_TO_FD=
GUEST_FROM_FD=

guest_log() { printf 'guest: %s\n' "$*" >&2; }

# Skips the test, or fails it in CI, where it must run.
guest_unavailable()
{
	if [[ ${CI:-} == true ]]; then
		guest_log "FAIL: cannot run a systemd guest in CI: $*"
		exit 1
	fi
	guest_log "SKIP: $*"
	exit 77
}

guest_require()
{
	local cmd cg2
	[[ $(id -u) == 0 ]] || guest_unavailable "needs root (namespaces, mounts, cgroups)"
	for cmd in unshare nsenter setsid setpriv findmnt mount pivot_root pgrep; do
		command -v "$cmd" >/dev/null || guest_unavailable "$cmd not found (util-linux, procps)"
	done
	[[ -x /lib/systemd/systemd ]] || guest_unavailable "/lib/systemd/systemd not found"
	cg2=$(findmnt -n -o TARGET -t cgroup2 | head -n 1)
	[[ -n $cg2 ]] || guest_unavailable "no cgroup2 file system mounted"
	grep -qw overlay /proc/filesystems || modinfo overlay >/dev/null 2>&1 ||
		guest_unavailable "no overlay file system in this kernel"
	unshare --mount --pid --fork --cgroup --uts --ipc --net --propagation private true \
		2>/dev/null || guest_unavailable "unshare cannot create namespaces here"
}

guest_die()
{
	guest_log "FAIL: $*"
	if [[ -n $GUEST_STATE && -s $GUEST_STATE/init.log ]]; then
		guest_log "guest init's output:"
		sed 's/^/  | /' "$GUEST_STATE/init.log" >&2
	fi
	exit 1
}

# guest_start [SHARED_DIR...]: boots the guest; returns once systemd says the
# system is running (or degraded), within GUEST_BOOT_TIMEOUT_S.
guest_start()
{
	local cg2 line masks=() u i state=
	guest_require
	cg2=$(findmnt -n -o TARGET -t cgroup2 | head -n 1)
	GUEST_HOME_CG=$cg2$(sed -n 's/^0:://p' /proc/self/cgroup)
	[[ -d $GUEST_HOME_CG ]] || guest_unavailable "cannot find this process's cgroup v2 ($GUEST_HOME_CG)"

	GUEST_STATE=$(mktemp -d "${TMPDIR:-/tmp}/sockgate-guest.$$.XXXXXX")
	mkdir "$GUEST_STATE/guest"
	mkfifo "$GUEST_STATE/to_guest" "$GUEST_STATE/from_guest" "$GUEST_STATE/exit"
	# Read-write opens never block, and keep a reader and a writer on each.
	exec {GUEST_TO_FD}<>"$GUEST_STATE/to_guest" {GUEST_FROM_FD}<>"$GUEST_STATE/from_guest"

	# The host's own timers and services must not run in the guest, nor
	# the mounts of kernel debugging and tuning interfaces.
	masks=(systemd-timesyncd.service sys-kernel-debug.mount sys-kernel-tracing.mount
		sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount)
	for u in /etc/systemd/system/*.wants/* /lib/systemd/system/timers.target.wants/*.timer; do
		[[ -e $u || -L $u ]] && masks+=("${u##*/}")
	done
	# systemd-debug-generator fails on a unit masked twice.
	mapfile -t masks < <(printf '%s\n' "${masks[@]}" | sort -u)

	# What a test killed outright (SIGKILL: no trap ran) left: its guest died
	# with it (unshare's pdeathsig), its empty cgroup and files did not.
	for u in "$cg2"/sockgate-test-*-*; do
		[[ -d $u ]] || continue
		i=${u##*/sockgate-test-}
		kill -0 "${i%%-*}" 2>/dev/null || guest_rmdir_cgroup "$u"
	done
	for u in "${TMPDIR:-/tmp}"/sockgate-guest.*.*; do
		[[ -d $u ]] || continue
		i=${u##*/sockgate-guest.}
		kill -0 "${i%%.*}" 2>/dev/null || rm -rf "$u"
	done
	GUEST_CG=$cg2/sockgate-test-$$-$RANDOM
	mkdir "$GUEST_CG" || guest_unavailable "cannot create a cgroup under $cg2"
	(
		# First, so that the parent's open just below cannot wait forever:
		# opening a fifo for writing waits for its reader.
		exec 9>"$GUEST_STATE/exit"
		exec {GUEST_TO_FD}>&- {GUEST_FROM_FD}>&-
		if ! echo "$BASHPID" >"$GUEST_CG/cgroup.procs"; then
			echo "error: cannot move into the cgroup $GUEST_CG" >"$GUEST_STATE/from_guest"
			exit 1
		fi
		# pdeathsig: if this test is killed outright, unshare dies and
		# --kill-child takes the guest with it. setsid execs without forking
		# (this subshell leads no process group), so this PID stays unshare's.
		exec setsid setpriv --pdeathsig KILL \
			unshare --mount --pid --fork --cgroup --uts --ipc --net \
			--propagation private --kill-child \
			bash "$GUEST_DIR/guest-init.sh" "$GUEST_STATE" "${masks[@]}" -- "$@"
	) </dev/null >"$GUEST_STATE/init.log" 2>&1 &
	GUEST_UNSHARE_PID=$!
	exec {GUEST_EXIT_FD}<"$GUEST_STATE/exit"

	if ! read -r -t "$GUEST_BOOT_TIMEOUT_S" -u "$GUEST_FROM_FD" line; then
		guest_die "the guest's init did not report within ${GUEST_BOOT_TIMEOUT_S}s"
	fi
	[[ $line == mounted ]] || guest_die "guest init: $line"
	[[ $(readlink "/proc/$GUEST_UNSHARE_PID/exe") == */unshare ]] ||
		guest_die "process $GUEST_UNSHARE_PID is not unshare"
	GUEST_PID=$(pgrep -P "$GUEST_UNSHARE_PID")
	[[ $GUEST_PID =~ ^[0-9]+$ ]] || guest_die "cannot find the guest's PID 1"
	echo "$GUEST_UNSHARE_PID" >"$GUEST_HOME_CG/cgroup.procs"
	echo go >&"$GUEST_TO_FD"

	# No event reaches the outside when systemd is up: poll, bounded, 50 ms.
	for ((i = 0; i < GUEST_BOOT_TIMEOUT_S * 20; i++)); do
		if ! kill -0 "$GUEST_UNSHARE_PID" 2>/dev/null; then
			guest_die "the guest exited while booting"
		fi
		if [[ $(readlink "/proc/$GUEST_PID/exe" 2>/dev/null) == */systemd ]]; then
			state=$(guest_run systemctl is-system-running 2>/dev/null) || true
			case $state in
			running | degraded) break ;;
			esac
		fi
		sleep 0.05
	done
	case $state in
	running) ;;
	degraded)
		guest_log "booted degraded; failed units:"
		guest_run systemctl --failed --no-legend >&2 || true
		;;
	*) guest_die "systemd did not finish booting within ${GUEST_BOOT_TIMEOUT_S}s (state: ${state:-none})" ;;
	esac
}

# guest_run CMD...: runs CMD in every namespace of the guest, with a clean
# environment; standard input, output and error pass through.
guest_run()
{
	nsenter -t "$GUEST_PID" -m -u -i -n -p -C -- env -i PATH="$GUEST_PATH" LANG=C.UTF-8 "$@"
}

# Waits, at most GUEST_STOP_TIMEOUT_S, for unshare to exit (EOF on the exit pipe).
guest_wait_exit()
{
	local rc=0
	read -r -t "$1" -u "$GUEST_EXIT_FD" _ || rc=$?
	# 1: EOF, unshare is gone. Above 128: timed out.
	[[ $rc -le 128 ]]
}

# Removes an empty cgroup tree, deepest first; a populated one stays.
guest_rmdir_cgroup()
{
	local d
	while IFS= read -r d; do
		rmdir "$d" 2>/dev/null
	done < <(find "$1" -depth -type d 2>/dev/null)
}

# guest_stop: powers the guest off and removes its cgroup; safe to call twice.
guest_stop()
{
	local i asked=
	# Cleanup goes on past any failure (the caller may run under set -e).
	local -
	set +e
	if [[ -n $GUEST_UNSHARE_PID ]]; then
		# Only a booted guest can power off; one still in guest-init.sh is killed.
		if [[ -n $GUEST_PID && -n $GUEST_EXIT_FD ]] &&
			[[ $(readlink "/proc/$GUEST_PID/exe" 2>/dev/null) == */systemd ]] &&
			timeout 10 nsenter -t "$GUEST_PID" -m -u -i -n -p -C -- \
				env -i PATH="$GUEST_PATH" systemctl poweroff --no-block >/dev/null 2>&1; then
			asked=1
		fi
		if [[ -z $asked ]] || ! guest_wait_exit "$GUEST_STOP_TIMEOUT_S"; then
			[[ -n $asked ]] && guest_log "the guest did not power off within ${GUEST_STOP_TIMEOUT_S}s: killing it"
			# The guest's PID 1 by its PID: its PID namespace takes every
			# guest process with it. Before there is one, unshare (whose
			# --kill-child takes the guest's init along).
			if [[ -n $GUEST_PID ]]; then
				kill -KILL "$GUEST_PID" 2>/dev/null
			else
				kill -KILL "$GUEST_UNSHARE_PID" 2>/dev/null
			fi
			if [[ -z $GUEST_EXIT_FD ]] || ! guest_wait_exit 10; then
				kill -KILL "$GUEST_UNSHARE_PID" 2>/dev/null
			fi
		fi
		wait "$GUEST_UNSHARE_PID" 2>/dev/null || true
		GUEST_UNSHARE_PID=
	fi
	if [[ -n $GUEST_EXIT_FD ]]; then
		exec {GUEST_EXIT_FD}<&-
		GUEST_EXIT_FD=
	fi
	if [[ -n $GUEST_TO_FD ]]; then
		exec {GUEST_TO_FD}>&- {GUEST_FROM_FD}>&-
		GUEST_TO_FD='' GUEST_FROM_FD=''
	fi
	if [[ -n $GUEST_CG && -d $GUEST_CG ]]; then
		# The kernel may take a moment to mark the emptied cgroups unpopulated.
		for ((i = 0; i < 100; i++)); do
			guest_rmdir_cgroup "$GUEST_CG"
			[[ -d $GUEST_CG ]] || break
			sleep 0.05
		done
		[[ -d $GUEST_CG ]] && guest_log "could not remove the cgroup $GUEST_CG"
		GUEST_CG=
	fi
	if [[ -n $GUEST_STATE ]]; then
		rm -rf "$GUEST_STATE"
		GUEST_STATE=
	fi
	GUEST_PID=
}

guest__on_exit()
{
	local rc=$?
	trap - EXIT
	guest_stop
	exit "$rc"
}
trap guest__on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- waiting, for the scripts that drive a guest ---------------------------

# The interval of bounded polls, where no event exists to wait for.
POLL_S=${POLL_S:-0.05}

# poll_until TIMEOUT_S CMD...: runs CMD every POLL_S until it succeeds.
poll_until()
{
	local timeout=$1 i
	shift
	for ((i = 0; i < timeout * 20; i++)); do
		"$@" && return 0
		sleep "$POLL_S"
	done
	return 1
}

# expect_line FD TEXT TIMEOUT_S: reads lines from FD until one contains TEXT;
# fails at the deadline or at end of file.
expect_line()
{
	local fd=$1 text=$2 timeout=$3 line seen='' deadline left
	deadline=$(($(date +%s%N) / 1000000 + timeout * 1000))
	while :; do
		left=$((deadline - $(date +%s%N) / 1000000))
		((left > 0)) || break
		IFS= read -r -t "$((left / 1000)).$(printf '%03d' $((left % 1000)))" -u "$fd" line || break
		seen+="$line"$'\n'
		[[ $line == *"$text"* ]] && return 0
	done
	echo "expected \"$text\" within ${timeout}s; got:" >&2
	printf '%s' "$seen" | sed 's/^/  | /' >&2
	return 1
}
