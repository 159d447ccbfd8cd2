#!/usr/bin/env bash
# bench/carry.sh BUILD_DIR: 1,000 relayed sessions moving data through
# `systemctl restart sockgate` (byte-exact) and `kill -SEGV` of the main
# process (every session still connected), under a real systemd booted in
# namespaces (tests/systemd/guest.sh), through the installed build. It is
# part k of tests/systemd/test_systemd.sh with 1,000 sessions instead of 50;
# the figures go to bench/RESULTS-CARRY.md by hand. As root; a few minutes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:?usage: bench/carry.sh BUILD_DIR}
SOCKGATE_CARRY_SESSIONS=${SOCKGATE_CARRY_SESSIONS:-1000} \
	bash "$here/../tests/systemd/test_systemd.sh" "$build"
