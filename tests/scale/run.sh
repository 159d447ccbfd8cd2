#!/usr/bin/env bash
# Runs the hostile-clients defences at scale (tests/scale/test_scale.c) against the daemon of
# a build directory and prints the figures SECURITY.md quotes (lines starting "SCALE").
# Usage: tests/scale/run.sh [BUILD_DIR]    (default: build; about 3 minutes on 2 CPUs)
# Loopback only: every "host" is an address of 127.0.0.0/8.
set -euo pipefail
dir=${1:-build}
cmake --build "$dir" --target test_scale >/dev/null
"$dir/tests/test_scale" 2>&1 | tee "$dir/scale.log"
echo "== figures"
grep '^SCALE' "$dir/scale.log" || true
