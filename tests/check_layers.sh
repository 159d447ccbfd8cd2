#!/usr/bin/env bash
# The core library's dependencies point one way: a file of src/core/ may include only the
# headers of modules on lower layers (and its own). The layers are the table in
# src/core/LAYERS; a module missing from it fails too, so a new module is placed on purpose.
# Usage: tests/check_layers.sh [SRC_CORE_DIR]    (ctest runs it as "layers")
set -euo pipefail
core=${1:-$(dirname "$0")/../src/core}
declare -A layer
while read -r module n _; do
	[[ -z $module || $module == \#* ]] && continue
	layer[$module]=$n
done <"$core/LAYERS"

bad=0
for file in "$core"/*.c "$core"/*.h; do
	name=$(basename "$file")
	self=${name%.*}
	if [[ -z ${layer[$self]+set} ]]; then
		echo "src/core/$name: module \"$self\" is not in src/core/LAYERS" >&2
		bad=1
		continue
	fi
	while IFS=: read -r line inc; do
		dep=${inc#*\"}
		dep=${dep%%.h\"*}
		[[ $dep == "$self" ]] && continue
		if [[ -z ${layer[$dep]+set} ]]; then
			echo "src/core/$name:$line: includes \"$dep.h\", which is not in src/core/LAYERS" >&2
			bad=1
		elif ((layer[$dep] >= layer[$self])); then
			echo "src/core/$name:$line: $self (layer ${layer[$self]}) includes $dep.h (layer ${layer[$dep]}): dependencies must point down" >&2
			bad=1
		fi
	done < <(grep -n '^#include "' "$file" || true)
done
if ((bad)); then
	echo "check_layers: the include graph of src/core has edges that point up or sideways" >&2
	exit 1
fi
echo "check_layers: ${#layer[@]} modules, every include points down"
