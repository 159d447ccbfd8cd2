#!/usr/bin/env bash
# bench/tls.sh: sockgate terminating TLS, side by side with HAProxy (`bind ...
# ssl crt`, tcp mode) and stunnel4, all from Debian, relaying to the same
# upstream on loopback with the same certificate (ECDSA P-256). The plain
# direct path (the upstream itself, no TLS) is the baseline of the bulk rows.
# Every contender runs each measurement once per round, in an order that
# rotates; bench/RESULTS-TLS.md reports the medians over the rounds, the
# ratios against the direct path and against HAProxy of the same round, and
# issue 16's floors (no worse than HAProxy on any row, an idle TLS session
# under 16 KiB).
#
# Usage (as root on Debian 12, from anywhere):
#   bench/tls.sh [--quick] [--rounds N] [--seconds S] [--no-deps] [--build DIR]
#                [--port-base P]
#
#   --quick      1 round, 1-second runs, idle at 1,000 only (~2 minutes)
#   --rounds N   rounds (default 3; ~12 minutes)
#   --seconds S  measured seconds per run (default 2)
#   --no-deps    do not run scripts/deps bench
#   --build DIR  build directory (default build-bench, a Release build)
#   --port-base  first of 8 loopback ports (default 17100)
#   --tests LIST only these rows, comma-separated (e.g. hs_full,hs_resumed)
#
# Rows: tlsbulk1, tlsbulk8 (MB/s through TLS to the checking sink, sgbench
# tlsbulk), hs_full, hs_resumed (handshakes per second from 8 threads, full or
# resuming a TLS 1.3 ticket), idle1000, idle9000 (KiB of the relay's memory per
# idle TLS session; sockgate's sessions are logged in).
# Output: bench/results/tls-STAMP.jsonl, bench/results/logs-tls-STAMP/ and
# bench/RESULTS-TLS.md (bench/tls_report.py RAW META writes it again).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

quick=0 rounds=3 seconds=2 deps=1 port_base=17100 only=
build="$repo/build-bench"
rounds_set=0 seconds_set=0
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--rounds) rounds=$2; rounds_set=1; shift ;;
	--seconds) seconds=$2; seconds_set=1; shift ;;
	--no-deps) deps=0 ;;
	--build) build=$2; shift ;;
	--port-base) port_base=$2; shift ;;
	--tests) only=",$2,"; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/tls.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
if [ $quick -eq 1 ]; then
	[ $rounds_set -eq 1 ] || rounds=1
	[ $seconds_set -eq 1 ] || seconds=1
fi
warmup=0.3
settle=0.5

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ $deps -eq 1 ]; then
	[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages), or pass --no-deps"
	bash "$repo/scripts/deps" bench
fi
for t in haproxy stunnel4 openssl jq ss python3; do
	command -v "$t" >/dev/null || die "$t is missing: run scripts/deps bench as root"
done

log "building sockgate and sgbench (Release) in $build"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target sockgate sockgate-passwd sgbench >/dev/null
sgbench=$build/bench/sgbench
sockgate=$build/src/sockgate

# 9,000 idle sessions: the generator holds 9,000 sockets, a relay 18,000.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
resdir=$here/results
mkdir -p "$resdir"
raw=$resdir/tls-$stamp.jsonl
meta=$resdir/tls-meta-$stamp.tsv
logdir=$resdir/logs-tls-$stamp
mkdir -p "$logdir"
work=$(mktemp -d /tmp/sgbench-tls.XXXXXX)
: >"$raw"

declare -A pid port
pids_started=()
cleanup() {
	local p
	trap '' INT TERM
	for p in "${pids_started[@]}"; do
		kill -TERM -- "-$p" 2>/dev/null || true
	done
	sleep 0.3
	for p in "${pids_started[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
	local i
	for i in $(seq 1 200); do
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# Each contender leads its own process group: stopping it stops its children.
spawn() {
	local name=$1
	shift
	setsid "$@" >>"$logdir/$name.log" 2>&1 &
	pid[$name]=$!
	pids_started+=("$!")
}

stop() {
	local p=${pid[$1]:-} q keep=()
	[ -n "$p" ] || return 0
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
	local rc=0
	wait "$p" 2>/dev/null || rc=$?
	# A contender that crashes on the way out is worth knowing of.
	[ "$rc" -le 128 ] || [ "$rc" -eq 143 ] || log "$1 ended by signal $((rc - 128)) when stopped"
	unset "pid[$1]"
}

# --- the certificate, the user, the configurations ---

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 600 "$work/key.pem"
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

pw_fast=fast-$RANDOM$RANDOM
# The cheapest hash sockgate accepts (bcrypt, cost 4): the login is not what
# these rows measure.
# shellcheck disable=SC2016 # a salt prefix, not an expansion
fast_hash=$("$sgbench" hash --login "fast:$pw_fast" --salt '$2b$04$' --iterations 1 2>/dev/null | jq -r .hash)
printf 'fast:%s\n' "$fast_hash" >"$work/users"
chmod 600 "$work/users"

up=$port_base
port[upstream]=$up
port[direct]=$up
port[sockgate]=$((port_base + 1))
port[haproxy]=$((port_base + 2))
port[stunnel]=$((port_base + 3))

# One source (the generator on 127.0.0.1) opens thousands of connections:
# the per-source limits and penalties that guard a real listener would stop
# the benchmark, as they would any single-source flood.
cat >"$work/sockgate.conf" <<EOF
limits = { per_source_startups = 0; };
penalties = { enabled = false; };
log_limits = { per_source = 0; };
gateways = (
  {
    name = "tls";
    listen = "127.0.0.1:${port[sockgate]}";
    upstream = "127.0.0.1:$up";
    credentials = "$work/users";
    max_sessions = 9990;
    tls = { certificate = "$work/cert.pem"; key = "$work/key.pem"; };
  }
);
EOF
"$sockgate" -t -c "$work/sockgate.conf" >"$logdir/sockgate-t.log" 2>&1 ||
	die "sockgate rejects the benchmark's configuration: $(cat "$logdir/sockgate-t.log")"

# HAProxy as its documentation sets up TLS offload: its defaults for ciphers,
# session cache and tickets; maxconn keeps its descriptors within 20,000.
cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 9950
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen tls
    bind 127.0.0.1:${port[haproxy]} ssl crt $work/haproxy.pem
    server up 127.0.0.1:$up
EOF

cat >"$work/stunnel.conf" <<EOF
foreground = yes
pid =
debug = 3
[tls]
accept = 127.0.0.1:${port[stunnel]}
connect = 127.0.0.1:$up
cert = $work/cert.pem
key = $work/key.pem
EOF

start() {
	case "$1" in
	upstream) spawn upstream "$sgbench" serve --listen "127.0.0.1:$up" --threads 1 ;;
	direct) pid[direct]=${pid[upstream]}; return 0 ;;
	sockgate) spawn sockgate "$sockgate" -c "$work/sockgate.conf" ;;
	haproxy) spawn haproxy haproxy -f "$work/haproxy.cfg" -db ;;
	stunnel) spawn stunnel stunnel4 "$work/stunnel.conf" ;;
	esac
	wait_port "${port[$1]}" || die "$1 does not listen on 127.0.0.1:${port[$1]} (see $logdir/$1.log)"
}

restart() {
	stop "$1"
	start "$1"
}

tls_contenders=(sockgate haproxy stunnel)
start upstream
start direct
for c in "${tls_contenders[@]}"; do
	start "$c"
done
log "contenders: direct ${tls_contenders[*]}"

{
	printf 'stamp\t%s\n' "$stamp"
	printf 'rounds\t%s\n' "$rounds"
	printf 'seconds\t%s\n' "$seconds"
	printf 'cores\t%s\n' "$(nproc)"
	printf 'cpu\t%s\n' "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
	printf 'kernel\t%s\n' "$(uname -r)"
	printf 'openssl\t%s\n' "$(openssl version)"
	printf 'haproxy\t%s\n' "$(haproxy -v | head -n 1)"
	printf 'stunnel\t%s\n' "$(stunnel4 -version 2>&1 | grep -m 1 '^stunnel')"
	printf 'sockgate\t%s\n' "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
	printf 'contenders\tdirect %s\n' "${tls_contenders[*]}"
} >"$meta"

# run ROUND TEST CONTENDER sgbench-args...: appends one line to the raw file.
run() {
	local round=$1 test=$2 c=$3 out rc=0
	shift 3
	[ -z "$only" ] || [[ $only == *",$test,"* ]] || return 0
	out=$("$sgbench" "$@" --target "127.0.0.1:${port[$c]}" --label "$c" --pid "${pid[$c]}" \
		--warmup "$warmup" 2>>"$logdir/sgbench.log") || rc=$?
	out=$(tail -n 1 <<<"$out")
	[ -n "$out" ] || out='{"ok":false,"error":"no result"}'
	jq -c --argjson round "$round" --arg test "$test" --arg c "$c" --argjson rc "$rc" \
		'{round: $round, test: $test, contender: $c, rc: $rc} + .' <<<"$out" >>"$raw" ||
		printf '{"round":%s,"test":"%s","contender":"%s","rc":%s,"ok":false}\n' \
			"$round" "$test" "$c" "$rc" >>"$raw"
	tail -n 1 "$logdir/sgbench.log" | sed 's/^/    /' >&2
}

# la: the login arguments contender $1 needs (sockgate's sessions log in).
login_for() {
	la=()
	[ "$1" = sockgate ] && la=(--login "fast:$pw_fast")
	return 0
}

idle_sizes=(1000 9000)
[ $quick -eq 1 ] && idle_sizes=(1000)

for round in $(seq 1 "$rounds"); do
	log "round $round of $rounds"
	# The order rotates each round.
	all=(direct "${tls_contenders[@]}")
	k=$(((round - 1) % ${#all[@]}))
	order=("${all[@]:k}" "${all[@]:0:k}")
	for c in "${order[@]}"; do
		login_for "$c"
		if [ "$c" = direct ]; then
			run "$round" tlsbulk1 direct bulk --conns 1 --seconds "$seconds"
			run "$round" tlsbulk8 direct bulk --conns 8 --seconds "$seconds"
			continue
		fi
		run "$round" tlsbulk1 "$c" tlsbulk --conns 1 --seconds "$seconds" "${la[@]}"
		run "$round" tlsbulk8 "$c" tlsbulk --conns 8 --seconds "$seconds" "${la[@]}"
		run "$round" hs_full "$c" tlshandshakes --concurrency 8 --seconds "$seconds"
		run "$round" hs_resumed "$c" tlshandshakes --concurrency 8 --resume --seconds "$seconds"
		for n in "${idle_sizes[@]}"; do
			[ -z "$only" ] || [[ $only == *",idle$n,"* ]] || continue
			# A fresh process each time: what is measured is the sessions'
			# cost, not what earlier runs left in the allocator.
			restart "$c"
			run "$round" "idle$n" "$c" tlsidle --sessions "$n" --settle "$settle" "${la[@]}"
		done
		restart "$c"
	done
done

python3 "$here/tls_report.py" "$raw" "$meta" >"$here/RESULTS-TLS.md"
log "results: $raw; report: bench/RESULTS-TLS.md"
