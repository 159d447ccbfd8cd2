#!/usr/bin/env bash
# bench/run.sh: sockgate side by side with a direct connection, HAProxy (tcp
# mode), nginx (stream), socat and a fork-per-connection relay, all relaying to
# the same upstream on loopback. Every contender runs each measurement once per
# round, in an order that rotates; ratios are taken against the direct
# connection of the same round, and bench/RESULTS.md reports their medians.
# Throughput and ping-pong are also measured against the same upstream forking
# a process per connection (tests named *_fork), the kind of server
# sockgate-server is and many services behind a gateway are.
#
# Usage (as root on Debian 12, from anywhere):
#   bench/run.sh [--quick] [--rounds N] [--seconds S] [--profile] [--no-deps]
#                [--build DIR] [--port-base P] [--nice N] [--upstream-threads N]
#
#   --quick      2 rounds of 1-second runs, fewer measurements (~4 minutes)
#   --rounds N   rounds (default 5)
#   --seconds S  measured seconds per run (default 2)
#   --profile    afterwards, profile sockgate alone (perf, strace -c) into
#                bench/results/profile-*.txt
#   --no-deps    do not run scripts/deps bench
#   --build DIR  build directory (default build-bench, a Release build)
#   --port-base  first of 16 loopback ports (default 17000)
#   --nice N     run the upstream, every contender and the generator at nice N
#                (e.g. -10 on a machine shared with other work); sockgate's
#                password-check threads run at SCHED_BATCH, nice 19 regardless
#   --upstream-threads N
#                threads of the upstream (default 1: with the one-thread
#                generator, the direct path has a CPU per party and serves its
#                50 ping-pong sessions evenly; with 2, three busy threads share
#                two CPUs and the sessions of one upstream thread wait for time
#                slices, so the direct path's p50 is fast and its p99 milliseconds)
#
# Output: bench/results/raw-TIMESTAMP.jsonl (one line per run), the logs of the
# contenders in bench/results/logs-TIMESTAMP/, and bench/RESULTS.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

quick=0 rounds=5 seconds=2 profile=0 deps=1 port_base=17000 upstream_threads=1
build="$repo/build-bench"
rounds_set=0 seconds_set=0
nice_cmd=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--rounds) rounds=$2; rounds_set=1; shift ;;
	--seconds) seconds=$2; seconds_set=1; shift ;;
	--profile) profile=1 ;;
	--no-deps) deps=0 ;;
	--build) build=$2; shift ;;
	--port-base) port_base=$2; shift ;;
	--nice) nice_cmd=(nice -n "$2"); shift ;;
	--upstream-threads) upstream_threads=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
if [ $quick -eq 1 ]; then
	[ $rounds_set -eq 1 ] || rounds=2
	[ $seconds_set -eq 1 ] || seconds=1
fi
warmup=0.3
settle=0.5

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- set-up ---

if [ $deps -eq 1 ]; then
	[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages), or pass --no-deps"
	bash "$repo/scripts/deps" bench
fi
for t in haproxy nginx socat jq /usr/bin/python3 ss; do
	command -v "$t" >/dev/null || die "$t is missing: run scripts/deps bench as root"
done
nginx_stream=/usr/lib/nginx/modules/ngx_stream_module.so
[ -f $nginx_stream ] || die "nginx's stream module is missing (Debian package libnginx-mod-stream)"

log "building sockgate and sgbench (Release) in $build"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target sockgate sockgate-passwd sgbench >/dev/null
sgbench=$build/bench/sgbench
sockgate=$build/src/sockgate

# 9,900 idle sessions: the generator holds 9,900 sockets, a relay 19,800.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)

stamp=$(date -u +%Y%m%dT%H%M%SZ)
resdir=$here/results
mkdir -p "$resdir"
raw=$resdir/raw-$stamp.jsonl
logdir=$resdir/logs-$stamp
mkdir -p "$logdir"
work=$(mktemp -d /tmp/sgbench.XXXXXX)
: >"$raw"

declare -A pid port
pids_started=()
cleanup() {
	local p
	# Once: a second Ctrl-C must not cut the clean-up short.
	trap '' INT TERM
	if [ -n "$autogroup_saved" ]; then
		echo "$autogroup_saved" >/proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || true
	fi
	for p in "${pids_started[@]}"; do
		kill -TERM -- "-$p" 2>/dev/null || true
	done
	sleep 0.3
	for p in "${pids_started[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
# The storm is measured again with the kernel's autogroups off (see storm_noag
# below); the setting is put back however the script ends.
autogroup_file=/proc/sys/kernel/sched_autogroup_enabled
autogroup_saved=
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until something listens on 127.0.0.1:$1.
wait_port() {
	local i
	for i in $(seq 1 200); do
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# Each contender is the leader of its own process group, so stopping it also
# stops what it forked.
spawn() {
	local name=$1
	shift
	setsid "${nice_cmd[@]}" "$@" >>"$logdir/$name.log" 2>&1 &
	pid[$name]=$!
	pids_started+=("$!")
}

stop() {
	local p=${pid[$1]:-} q keep=()
	[ -n "$p" ] || return 0
	# Forget it for the clean-up too: its number may be reused by then.
	for q in "${pids_started[@]}"; do
		[ "$q" = "$p" ] || keep+=("$q")
	done
	pids_started=("${keep[@]}")
	kill -TERM -- "-$p" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL -- "-$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	unset "pid[$1]"
}

# --- users ---

pw_bench=bench-$RANDOM$RANDOM
pw_fast=fast-$RANDOM$RANDOM
printf '%s\n' "$pw_bench" | "$build/src/sockgate-passwd" -c --stdin "$work/users" bench >/dev/null
# A second user with the cheapest hash sockgate accepts (bcrypt, cost 4), so
# measurements that are not about password checks are not dominated by them.
# shellcheck disable=SC2016 # a salt prefix, not an expansion
fast_hash=$("$sgbench" hash --login "fast:$pw_fast" --salt '$2b$04$' --iterations 1 2>/dev/null | jq -r .hash)
printf 'fast:%s\n' "$fast_hash" >>"$work/users"
chmod 600 "$work/users"
log "timing one password check (yescrypt, as sockgate-passwd writes it)"
check_json=$("$sgbench" hash --login "bench:$pw_bench" --iterations 30 2>/dev/null)
check_ms=$(jq -r '.check_p50_us / 1000' <<<"$check_json")

# --- contenders ---

# Each contender listens twice: NAME relays to the epoll upstream ($up), and
# NAME@fork, 8 ports higher, to the forking one ($up_fork).
up=$port_base
up_fork=$((port_base + 8))
port[upstream]=$up
port[upstream-fork]=$up_fork
port[direct]=$up
port[sockgate]=$((port_base + 1))
port[sockgate-open]=$((port_base + 2))
port[haproxy]=$((port_base + 3))
port[haproxy-splice]=$((port_base + 4))
port[nginx]=$((port_base + 5))
port[socat]=$((port_base + 6))
port[forkrelay]=$((port_base + 7))
for c in direct sockgate sockgate-open haproxy haproxy-splice nginx socat forkrelay; do
	port[$c@fork]=$((port[$c] + 8))
done

# sg_gateway NAME PORT UPSTREAM [EXTRA]: one gateway of the daemon's configuration.
sg_gateway() {
	printf '  {\n    name = "%s";\n    listen = "127.0.0.1:%s";\n    upstream = "127.0.0.1:%s";\n' \
		"$1" "$2" "$3"
	printf '    credentials = "%s";\n    max_sessions = 20000;%s\n  }' "$work/users" "${4:-}"
}
{
	echo '# bench/run.sh: gateways with the login, and without (if supported).'
	# One source (the generator) opens thousands of connections: the
	# per-source limits and penalties that guard a real listener would stop
	# it, as they stop any single-source flood (compare.sh does the same).
	echo 'limits = { per_source_startups = 0; };'
	echo 'penalties = { noauth = 0; };'
	echo 'log_limits = { per_source = 0; };'
	echo 'gateways = ('
	sg_gateway bench "${port[sockgate]}" "$up"
	echo ','
	sg_gateway bench-fork "${port[sockgate@fork]}" "$up_fork"
	echo
	echo '@OPEN@'
	echo ');'
} >"$work/sockgate.conf"
open_gw="  ,$(sg_gateway bench-open "${port[sockgate-open]}" "$up" '
    authenticate = false;')
  ,$(sg_gateway bench-open-fork "${port[sockgate-open@fork]}" "$up_fork" '
    authenticate = false;')"
cp "$work/sockgate.conf" "$work/sockgate-try.conf"
python3 - "$work/sockgate-try.conf" "$open_gw" <<'EOF'
import sys
p, gw = sys.argv[1], sys.argv[2]
s = open(p).read().replace("@OPEN@", gw)
open(p, "w").write(s)
EOF
have_open=0
if "$sockgate" -t -c "$work/sockgate-try.conf" >"$logdir/sockgate-t.log" 2>&1; then
	have_open=1
	mv "$work/sockgate-try.conf" "$work/sockgate.conf"
else
	log "this sockgate has no 'authenticate = false': no raw connection rate for it"
	sed -i '/@OPEN@/d' "$work/sockgate.conf"
fi
"$sockgate" -t -c "$work/sockgate.conf" >>"$logdir/sockgate-t.log" 2>&1 ||
	die "sockgate rejects the benchmark's configuration: $(cat "$logdir/sockgate-t.log")"

# maxconn and maxpipes keep HAProxy's descriptor needs (2 per connection, 2 per
# splice pipe) within the 20,000 that every contender gets.
haproxy_conf() { # $1 port, $2 extra defaults lines
	cat <<EOF
global
    nbthread 2
    maxconn 9950
    maxpipes 32
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
$2
listen bench
    bind 127.0.0.1:$1
    server up 127.0.0.1:$up
listen bench-fork
    bind 127.0.0.1:$(($1 + 8))
    server up 127.0.0.1:$up_fork
EOF
}
haproxy_conf "${port[haproxy]}" "" >"$work/haproxy.cfg"
haproxy_conf "${port[haproxy-splice]}" "    option splice-request
    option splice-response" >"$work/haproxy-splice.cfg"
cat >"$work/nginx.conf" <<EOF
load_module $nginx_stream;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $work/nginx.pid;
error_log $logdir/nginx-error.log warn;
daemon off;
events { worker_connections 20000; }
stream {
    server {
        listen 127.0.0.1:${port[nginx]};
        proxy_pass 127.0.0.1:$up;
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
        # Pass a client's half-close on, as the other relays do (off by default).
        proxy_half_close on;
    }
    server {
        listen 127.0.0.1:${port[nginx@fork]};
        proxy_pass 127.0.0.1:$up_fork;
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
        proxy_half_close on;
    }
}
EOF

start() {
	case "$1" in
	upstream) spawn upstream "$sgbench" serve --listen "127.0.0.1:$up" --threads "$upstream_threads" ;;
	upstream-fork) spawn upstream-fork "$sgbench" serve --listen "127.0.0.1:$up_fork" --fork ;;
	sockgate | sockgate-open)
		# One daemon serves all four gateways.
		[ -z "${pid[sockgate]:-}" ] || return 0
		spawn sockgate "$sockgate" -c "$work/sockgate.conf"
		;;
	haproxy) spawn haproxy haproxy -f "$work/haproxy.cfg" -db ;;
	haproxy-splice) spawn haproxy-splice haproxy -f "$work/haproxy-splice.cfg" -db ;;
	nginx) spawn nginx nginx -c "$work/nginx.conf" -e "$logdir/nginx-error.log" ;;
	socat)
		spawn socat socat "TCP-LISTEN:${port[socat]},bind=127.0.0.1,fork,reuseaddr,backlog=4096" "TCP:127.0.0.1:$up"
		spawn socat@fork socat "TCP-LISTEN:${port[socat@fork]},bind=127.0.0.1,fork,reuseaddr,backlog=4096" "TCP:127.0.0.1:$up_fork"
		;;
	forkrelay)
		spawn forkrelay "$sgbench" forkrelay --listen "127.0.0.1:${port[forkrelay]}" --upstream "127.0.0.1:$up"
		spawn forkrelay@fork "$sgbench" forkrelay --listen "127.0.0.1:${port[forkrelay@fork]}" --upstream "127.0.0.1:$up_fork"
		;;
	direct) pid[direct]=${pid[upstream]} ;;
	direct@fork) pid[direct@fork]=${pid[upstream-fork]} ;;
	esac
	# One process listening for both upstreams is measured under both names.
	case "$1" in
	sockgate | sockgate-open)
		pid[sockgate-open]=${pid[sockgate]}
		pid[sockgate@fork]=${pid[sockgate]}
		pid[sockgate-open@fork]=${pid[sockgate]}
		;;
	haproxy | haproxy-splice | nginx) pid[$1@fork]=${pid[$1]} ;;
	esac
	local n more=()
	# sockgate-open is started (and restarted) as sockgate: wait for all of its ports.
	[ "$1" = sockgate ] && [ "$have_open" -eq 1 ] &&
		more=("${port[sockgate-open]}" "${port[sockgate-open@fork]}")
	for n in "${port[$1]}" ${port[$1@fork]:-} "${more[@]}"; do
		wait_port "$n" || die "$1 does not listen on 127.0.0.1:$n (see $logdir/$1.log)"
	done
}

restart() {
	case "$1" in
	direct) stop upstream; start upstream; start direct ;;
	sockgate | sockgate-open)
		stop sockgate
		unset "pid[sockgate-open]" "pid[sockgate@fork]" "pid[sockgate-open@fork]"
		start sockgate
		;;
	socat | forkrelay) stop "$1"; stop "$1@fork"; start "$1" ;;
	*) stop "$1"; start "$1" ;;
	esac
}

contenders=(direct sockgate haproxy nginx socat forkrelay)
[ $have_open -eq 1 ] && contenders=(direct sockgate sockgate-open haproxy nginx socat forkrelay)
[ $quick -eq 0 ] && contenders+=(haproxy-splice)

start upstream
start upstream-fork
start direct@fork
for c in "${contenders[@]}"; do
	start "$c"
done
log "contenders: ${contenders[*]} (pids: $(for c in "${contenders[@]}"; do printf '%s=%s ' "$c" "${pid[$c]}"; done))"

# --- measurements ---

# test name, then sgbench arguments. Contenders with a login (sockgate) get
# --login added; sockgate-open and the relays need none.
tests_main=(
	"bulk1|bulk --conns 1"
	"bulk8|bulk --conns 8"
	"pingpong1|pingpong --conns 1"
	"pingpong50|pingpong --conns 50"
	"pingpong50_paced|pingpong --conns 50 --rate 200"
	"connrate|connrate --concurrency 16"
	"bulk8_fork|bulk --conns 8"
	"pingpong50_fork|pingpong --conns 50"
)
[ $quick -eq 0 ] && tests_main+=("bulk2_1|bulk2 --conns 1" "bulk2_8|bulk2 --conns 8"
	"bulk1_fork|bulk --conns 1" "pingpong1_fork|pingpong --conns 1")

# la: the login arguments contender $1 needs.
login_for() {
	la=()
	[ "$1" = sockgate ] && la=(--login "fast:$pw_fast")
	return 0
}

# run ROUND TEST CONTENDER sgbench-args...: appends one line to the raw file.
# A test named *_fork goes through the contender's listener for the forking
# upstream.
run() {
	local round=$1 test=$2 c=$3 out rc via=$3
	shift 3
	rc=0
	[ "${test%_fork}" != "$test" ] && via=$c@fork
	out=$("${nice_cmd[@]}" "$sgbench" "$@" --target "127.0.0.1:${port[$via]}" --label "$c" \
		--pid "${pid[$via]}" 2>>"$logdir/sgbench.log") || rc=$?
	out=$(tail -n 1 <<<"$out")
	[ -n "$out" ] || out='{"ok":false,"error":"no result"}'
	jq -c --argjson round "$round" --arg test "$test" --arg c "$c" --argjson rc "$rc" \
		'{round: $round, test: $test, contender: $c, rc: $rc} + .' <<<"$out" >>"$raw" ||
		printf '{"round":%s,"test":"%s","contender":"%s","rc":%s,"ok":false}\n' \
			"$round" "$test" "$c" "$rc" >>"$raw"
	tail -n 1 "$logdir/sgbench.log" | sed 's/^/    /' >&2
}

# pin CPULIST PID...: every thread of every process in the process groups of
# the PIDs (a contender and what it forked) may run on CPULIST only.
pin() {
	local cpus=$1 g p
	shift
	for g in "$@"; do
		for p in $(pgrep -g "$g"); do
			taskset -a -p -c "$cpus" "$p" >/dev/null 2>&1 || true
		done
	done
}
all_cpus="0-$(($(nproc) - 1))"

# The same as run, with the generator, the upstream and the contender all on
# CPU 0: the cost of the relay's path without cross-CPU wake-ups, whose cost
# in a virtual machine varies with where the scheduler happens to put things.
run_one_cpu() {
	local c=$3
	pin 0 "${pid[upstream]}" "${pid[$c]}"
	nice_cmd_saved=("${nice_cmd[@]}")
	nice_cmd=(taskset -c 0 "${nice_cmd[@]}")
	run "$@"
	nice_cmd=("${nice_cmd_saved[@]}")
	pin "$all_cpus" "${pid[upstream]}" "${pid[$c]}"
}

rotate() { # rotate N items...: the items, shifted left by N
	local n=$1
	shift
	local a=("$@") i
	for i in "${!a[@]}"; do
		printf '%s\n' "${a[$(((i + n) % ${#a[@]}))]}"
	done
}

idle_big_contenders=("${contenders[@]}")
[ $quick -eq 1 ] && idle_big_contenders=(direct sockgate)

t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load_start%% *}" -v c="$(nproc)" 'BEGIN { exit !(l > c / 2) }'; then
	log "warning: load average $load_start on $(nproc) cores: other work will add noise"
fi
common=(--seconds "$seconds" --warmup "$warmup")
for round in $(seq 1 "$rounds"); do
	mapfile -t order < <(rotate $((round - 1)) "${contenders[@]}")
	log "round $round/$rounds: ${order[*]}"
	for spec in "${tests_main[@]}"; do
		test=${spec%%|*}
		read -r -a args <<<"${spec#*|}"
		for c in "${order[@]}"; do
			# sockgate's connection rate with the login is connrate_login.
			[ "$test" = connrate ] && [ "$c" = sockgate ] && continue
			login_for "$c"
			run "$round" "$test" "$c" "${args[@]}" "${common[@]}" "${la[@]}"
		done
	done
	for c in "${order[@]}"; do
		login_for "$c"
		run_one_cpu "$round" pingpong1_cpu0 "$c" pingpong --conns 1 "${common[@]}" "${la[@]}"
	done
	# sockgate only: the login itself.
	run "$round" connrate_login sockgate connrate --concurrency 16 "${common[@]}" --login "fast:$pw_fast"
	# The warm-up outlasts the second after the last relayed byte (of
	# connrate_login just before) during which sockgate keeps a CPU for
	# relaying sessions (auth_threads_relaying): logins alone use every CPU.
	run "$round" logins sockgate logins --concurrency 32 --seconds "$seconds" --warmup 1.5 \
		--login "bench:$pw_bench"
	# Twice the usual length: p99 of paced round trips needs the samples.
	storm_args=(storm --conns 10 --rate 100 --concurrency 32 --seconds "$(awk -v s="$seconds" 'BEGIN { print 2 * s }')"
		--warmup 0.5 --login "bench:$pw_bench")
	run "$round" storm sockgate "${storm_args[@]}"
	# With autogroups (the kernel's default), each session is a scheduling
	# group of its own, and a thread's priority counts only within its group:
	# the upstream and the clients, started in other sessions, share the CPU
	# with the password checks by group weight. Measured again without
	# autogroups, when this can be set.
	# A process keeps the group it started in: restart the upstream and
	# sockgate after each change (the generator starts afresh anyway).
	if [ "$(cat "$autogroup_file" 2>/dev/null)" = 1 ] && [ -w "$autogroup_file" ]; then
		autogroup_saved=1
		echo 0 >"$autogroup_file"
		restart direct
		restart sockgate
		run "$round" storm_noag sockgate "${storm_args[@]}"
		echo 1 >"$autogroup_file"
		autogroup_saved=
		restart direct
		restart sockgate
	fi
	# Memory: each contender fresh, so nothing freed by earlier runs is reused.
	for c in "${order[@]}"; do
		restart "$c"
		login_for "$c"
		run "$round" idle1000 "$c" idle --sessions 1000 --concurrency 64 --settle "$settle" "${la[@]}"
	done
	if [ "$round" -eq 1 ]; then
		for c in "${idle_big_contenders[@]}"; do
			restart "$c"
			login_for "$c"
			run "$round" idle9900 "$c" idle --sessions 9900 --concurrency 64 --settle "$settle" \
				--timeout 600 "${la[@]}"
			restart "$c"
		done
	fi
done
t_end=$(date +%s)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- profile (optional) ---

if [ $profile -eq 1 ]; then
	log "profiling sockgate"
	restart sockgate
	sp=${pid[sockgate]}
	prof() { # name, sgbench args...
		local name=$1
		shift
		if command -v perf >/dev/null; then
			perf stat -p "$sp" -e task-clock,context-switches,cpu-migrations,page-faults \
				-o "$resdir/profile-$stamp-$name-stat.txt" -- sleep "$((${seconds%.*} + 1))" &
			local ps=$!
			perf record -q -g -p "$sp" -o "$work/perf-$name.data" -- sleep "$((${seconds%.*} + 1))" \
				2>/dev/null &
			local pr=$!
			"$sgbench" "$@" --seconds "$seconds" --warmup 0 >/dev/null 2>>"$logdir/sgbench.log" || true
			wait $ps $pr || true
			perf report -i "$work/perf-$name.data" --stdio --no-children --percent-limit 1 \
				2>/dev/null | head -150 >"$resdir/profile-$stamp-$name-perf.txt" || true
		fi
		if command -v strace >/dev/null; then
			timeout "$((${seconds%.*} + 2))" strace -c -f -p "$sp" -o "$resdir/profile-$stamp-$name-strace.txt" &
			local st=$!
			sleep 0.3
			"$sgbench" "$@" --seconds "$seconds" --warmup 0 >/dev/null 2>>"$logdir/sgbench.log" || true
			kill -INT $st 2>/dev/null || true
			wait $st 2>/dev/null || true
		fi
	}
	prof bulk1 bulk --conns 1 --target "127.0.0.1:${port[sockgate]}" --login "fast:$pw_fast"
	prof bulk8 bulk --conns 8 --target "127.0.0.1:${port[sockgate]}" --login "fast:$pw_fast"
	prof pingpong50 pingpong --conns 50 --target "127.0.0.1:${port[sockgate]}" --login "fast:$pw_fast"
	if [ $have_open -eq 1 ]; then
		prof connrate connrate --concurrency 16 --target "127.0.0.1:${port[sockgate-open]}"
	fi
fi

# --- report ---

meta=$resdir/meta-$stamp.tsv
{
	printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'cpu\t%s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	printf 'cores\t%s\n' "$(nproc)"
	printf 'kernel\t%s\n' "$(uname -r)"
	printf 'memory\t%s\n' "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	# shellcheck disable=SC1091
	printf 'os\t%s\n' "$(. /etc/os-release && printf '%s' "$PRETTY_NAME")"
	printf 'nofile\t%s\n' "$nofile"
	printf 'autogroup\t%s\n' "$(cat "$autogroup_file" 2>/dev/null || echo absent)"
	printf 'load_start\t%s\n' "$load_start"
	printf 'load_end\t%s\n' "$load_end"
	printf 'duration_s\t%s\n' "$((t_end - t_start))"
	printf 'sockgate\t%s\n' "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
	printf 'haproxy\t%s\n' "$(haproxy -v | head -n1)"
	printf 'nginx\t%s\n' "$(nginx -v 2>&1 | head -n1)"
	printf 'socat\t%s\n' "$(socat -V | grep -m1 'socat version')"
	printf 'compiler\t%s\n' "$(cc --version | head -n1)"
	printf 'rounds\t%s\n' "$rounds"
	printf 'seconds\t%s\n' "$seconds"
	printf 'warmup\t%s\n' "$warmup"
	printf 'quick\t%s\n' "$quick"
	printf 'nice\t%s\n' "${nice_cmd[2]:-0}"
	printf 'upstream_threads\t%s\n' "$upstream_threads"
	printf 'check_ms\t%s\n' "$check_ms"
	printf 'contenders\t%s\n' "${contenders[*]}"
	printf 'have_open\t%s\n' "$have_open"
	printf 'raw\t%s\n' "${raw#"$repo"/}"
} >"$meta"
/usr/bin/python3 "$here/report.py" "$raw" "$meta" >"$here/RESULTS.md"
log "wrote $here/RESULTS.md from $raw ($((t_end - t_start)) s of measurements)"
