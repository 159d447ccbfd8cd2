#!/usr/bin/env bash
# bench/compare.sh: this tree's sockgate against another revision's, in the same
# run, interleaved: what a change did to the relay's hot path, the connection
# rate and the memory of idle sessions. Both are Release builds, both relay to
# the same one-thread epoll upstream (sgbench serve), and in each round the
# order of the two alternates. Writes bench/results/compare-STAMP.jsonl and
# prints the medians; bench/CHANGES.md gets a row by hand.
#
# Usage (on Debian 12, from anywhere; needs jq and python3):
#   bench/compare.sh [--rounds N] [--seconds S] [--port-base P] BASE_REVISION
#
#   --rounds N    rounds (default 5)
#   --seconds S   measured seconds per run (default 2)
#   --port-base P first of 8 loopback ports (default 17100)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rounds=5 seconds=2 port_base=17100 base_rev=
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift ;;
	--seconds) seconds=$2; shift ;;
	--port-base) port_base=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "bench/compare.sh: unknown option $1" >&2; exit 2 ;;
	*) base_rev=$1 ;;
	esac
	shift
done
[ -n "$base_rev" ] || { echo "usage: bench/compare.sh [options] BASE_REVISION" >&2; exit 2; }
for t in jq python3 ss git cmake; do
	command -v "$t" >/dev/null || { echo "bench/compare.sh: $t is missing" >&2; exit 1; }
done

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
work=$(mktemp -d /tmp/sgcompare.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	sleep 0.3
	for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
	git -C "$repo" worktree remove --force "$work/base-src" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

base_sha=$(git -C "$repo" rev-parse --short "$base_rev")
head_desc=$(git -C "$repo" describe --always --dirty)
log "building this tree ($head_desc) and $base_rev ($base_sha), Release"
cmake -S "$repo" -B "$repo/build-bench" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$repo/build-bench" -j"$(nproc)" --target sockgate sockgate-passwd sgbench >/dev/null
git -C "$repo" worktree add --detach "$work/base-src" "$base_rev" >/dev/null 2>&1
# The base's sources live in a fresh directory each time: a fresh cache too.
rm -rf "$repo/build-bench-base"
cmake -S "$work/base-src" -B "$repo/build-bench-base" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_TESTING=OFF >/dev/null
cmake --build "$repo/build-bench-base" -j"$(nproc)" --target sockgate >/dev/null
sgbench=$repo/build-bench/bench/sgbench
declare -A bin=([new]=$repo/build-bench/src/sockgate [base]=$repo/build-bench-base/src/sockgate)

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
up=$port_base
declare -A port=([new]=$((port_base + 1)) [base]=$((port_base + 2))
	[new-open]=$((port_base + 3)) [base-open]=$((port_base + 4)))

pw=fast-$RANDOM$RANDOM
# shellcheck disable=SC2016 # a salt prefix, not an expansion
hash=$("$sgbench" hash --login "fast:$pw" --salt '$2b$04$' --iterations 1 2>/dev/null | jq -r .hash)
printf 'fast:%s\n' "$hash" >"$work/users"
chmod 600 "$work/users"

wait_port() {
	for _ in $(seq 1 200); do
		ss -Hltn "sport = :$1" | grep -q . && return 0
		sleep 0.05
	done
	echo "bench/compare.sh: nothing listens on port $1" >&2
	return 1
}
spawn() { # name, command...
	local name=$1
	shift
	setsid "$@" >>"$work/$name.log" 2>&1 &
	pids+=("$!")
	eval "pid_$name=$!"
}

spawn upstream "$sgbench" serve --listen "127.0.0.1:$up" --threads 1
wait_port "$up"
for v in new base; do
	cat >"$work/$v.conf" <<EOF
limits = { per_source_startups = 0; };
penalties = { noauth = 0; };
log_limits = { per_source = 0; };
gateways = (
  { name = "bench"; listen = "127.0.0.1:${port[$v]}"; upstream = "127.0.0.1:$up";
    credentials = "$work/users"; max_sessions = 20000; },
  { name = "open"; listen = "127.0.0.1:${port[$v-open]}"; upstream = "127.0.0.1:$up";
    authenticate = false; max_sessions = 20000; }
);
EOF
	spawn "$v" "${bin[$v]}" -c "$work/$v.conf"
	wait_port "${port[$v]}"
	wait_port "${port[$v-open]}"
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw=$here/results/compare-$stamp.jsonl
mkdir -p "$here/results"
: >"$raw"
tests=(
	"bulk1|bulk --conns 1|login"
	"bulk8|bulk --conns 8|login"
	"pingpong1|pingpong --conns 1|login"
	"pingpong50|pingpong --conns 50|login"
	"connrate|connrate --concurrency 16|open"
	"idle1000|idle --sessions 1000 --concurrency 64 --settle 0.5|login"
)
for round in $(seq 1 "$rounds"); do
	order=(new base)
	[ $((round % 2)) -eq 0 ] && order=(base new)
	log "round $round/$rounds: ${order[*]}"
	for spec in "${tests[@]}"; do
		IFS='|' read -r test args kind <<<"$spec"
		read -r -a a <<<"$args"
		for v in "${order[@]}"; do
			if [ "$kind" = open ]; then
				target=${port[$v-open]} la=()
			else
				target=${port[$v]} la=(--login "fast:$pw")
			fi
			p_var=pid_$v
			out=$("$sgbench" "${a[@]}" "${la[@]}" --target "127.0.0.1:$target" --label "$v" \
				--seconds "$seconds" --warmup 0.3 --pid "${!p_var}" 2>>"$work/sgbench.log" |
				tail -n 1) || true
			[ -n "$out" ] || out='{"ok":false}'
			jq -c --argjson round "$round" --arg test "$test" --arg v "$v" \
				'{round: $round, test: $test, build: $v} + .' <<<"$out" >>"$raw"
		done
	done
done

log "medians over $rounds rounds (raw: ${raw#"$repo"/})"
python3 - "$raw" "$head_desc" "$base_sha" <<'EOF'
import json, statistics, sys
raw, new_name, base_name = sys.argv[1:]
keys = {"bulk1": ("MBps", "MB/s", 1), "bulk8": ("MBps", "MB/s", 1),
        "pingpong1": ("p50_us", "p50 µs", -1), "pingpong50": ("p50_us", "p50 µs", -1),
        "connrate": ("conns_per_s", "conn/s", 1), "idle1000": ("rss_kib_per_session", "KiB/session", -1)}
rows = {}
for line in open(raw):
    r = json.loads(line)
    if not r.get("ok", False):
        continue
    key = keys[r["test"]][0]
    if key in r:
        rows.setdefault((r["test"], r["build"]), []).append(r[key])
print(f"| test | {new_name} | {base_name} | new / base |")
print("|---|---|---|---|")
for test, (key, unit, better) in keys.items():
    n, b = rows.get((test, "new")), rows.get((test, "base"))
    if not n or not b:
        print(f"| {test} | - | - | - |")
        continue
    mn, mb = statistics.median(n), statistics.median(b)
    print(f"| {test} ({unit}) | {mn:.4g} ({min(n):.4g}-{max(n):.4g}) | "
          f"{mb:.4g} ({min(b):.4g}-{max(b):.4g}) | {mn / mb:.3f} |")
EOF
