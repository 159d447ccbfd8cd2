#!/usr/bin/env bash
# Runs every libFuzzer harness in BUILD_DIR (configured with -DSOCKGATE_FUZZ=ON)
# for SECONDS each, on a scratch copy of its seed corpus: the source tree never
# receives new corpus files. Fails on any crash, sanitizer report, leak, timeout
# or memory blow-up, and prints the reproducer.
#
#   tests/fuzz/run.sh build-fuzz 60
set -euo pipefail

if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -eq 0 ]; then
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
fi
if [ ! -d "$1" ]; then
	echo "fuzz: no build directory $1" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
targets=(credentials line config tls proxy ctl)

# Kept when something fails: the reproducers live here.
work=$(mktemp -d "${TMPDIR:-/tmp}/sockgate-fuzz.XXXXXX")

# Reports must stop the run (UBSan would only print and go on), and a leak
# inside libconfig itself is not ours (see lsan.supp).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:handle_abort=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0
unset CREDENTIALS_DIRECTORY

failed=0
for t in "${targets[@]}"; do
	bin=$build/tests/fuzz/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "fuzz: $bin is missing; configure with CC=clang -DSOCKGATE_FUZZ=ON" >&2
		exit 2
	fi
	dir=$work/$t
	mkdir -p "$dir/corpus" "$dir/artifacts"
	cp -R "$here/corpus/$t/." "$dir/corpus/"
	args=()
	case $t in
	config)
		# The shipped example as it is now, not only the seed's copy.
		cp "$root/etc/sockgate.conf" "$dir/corpus/sockgate.conf.current"
		args+=(-max_len=8192)
		;;
	line) args+=(-max_len=4096) ;;
	proxy) args+=(-max_len=1100) ;;
	ctl) args+=(-max_len=1100) ;;
	esac
	[ -f "$here/$t.dict" ] && args+=("-dict=$here/$t.dict")

	echo "== fuzz_$t for ${seconds}s"
	rc=0
	"$bin" "${args[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
		"$dir/corpus" >"$dir/log" 2>&1 || rc=$?

	artifacts=$(find "$dir/artifacts" -type f | sort)
	# Belt and braces: a report that somehow did not end the process.
	reports=$(grep -cE '^(==[0-9]+==ERROR|SUMMARY: [A-Za-z]+Sanitizer)|runtime error:' \
		"$dir/log" || true)
	grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)|^Done [0-9]+ runs' \
		"$dir/log" | sed 's/^/   /' || true
	if [ "$rc" -ne 0 ] || [ -n "$artifacts" ] || [ "$reports" -ne 0 ]; then
		failed=1
		echo "FAIL fuzz_$t (exit $rc); log: $dir/log" >&2
		grep -E 'ERROR|SUMMARY|runtime error|fuzz_[a-z]+: |Test unit written' "$dir/log" \
			| head -20 | sed 's/^/   /' >&2 || true
		while IFS= read -r a; do
			[ -n "$a" ] && echo "   reproduce: $bin '$a'" >&2
		done <<<"$artifacts"
	fi
done

if [ "$failed" -ne 0 ]; then
	echo "fuzz: FAILED; reproducers and logs kept in $work" >&2
	exit 1
fi
rm -rf "$work"
echo "fuzz: all targets clean"
