#!/bin/bash
# check_version.sh SOURCE_DIR: the version is set in one place, project(sockgate
# VERSION x.y.z) in CMakeLists.txt (sockgate -V prints it); the newest entry of
# debian/changelog and the newest released entry of CHANGELOG.md must name the
# same one, or a package or release would claim another version than it runs.
set -euo pipefail
src=${1:?usage: check_version.sh SOURCE_DIR}

cmake_v=$(sed -nE 's/^project\(sockgate VERSION ([0-9]+\.[0-9]+\.[0-9]+)[ )].*/\1/p' "$src/CMakeLists.txt")
# The first line: "sockgate (0.1.0) unstable; urgency=medium". A native package
# has no Debian revision, so the whole version must match.
deb_v=$(sed -nE '1s/^sockgate \(([^)]*)\) .*/\1/p' "$src/debian/changelog")
# The first "## [x.y.z]" heading; "## [Unreleased]" is not a version.
md_v=$(sed -nE '/^## \[[0-9]/{s/^## \[([^]]*)\].*/\1/p;q}' "$src/CHANGELOG.md")

echo "CMakeLists.txt: ${cmake_v:-none}, debian/changelog: ${deb_v:-none}, CHANGELOG.md: ${md_v:-none}"
[[ -n $cmake_v ]] || { echo "FAIL: no project(sockgate VERSION x.y.z) in CMakeLists.txt"; exit 1; }
[[ -n $deb_v ]] || { echo "FAIL: debian/changelog does not start with a sockgate (VERSION) entry"; exit 1; }
[[ -n $md_v ]] || { echo "FAIL: CHANGELOG.md has no \"## [x.y.z]\" entry"; exit 1; }
[[ $deb_v == "$cmake_v" ]] ||
	{ echo "FAIL: debian/changelog says $deb_v, CMakeLists.txt $cmake_v"; exit 1; }
[[ $md_v == "$cmake_v" ]] ||
	{ echo "FAIL: CHANGELOG.md says $md_v, CMakeLists.txt $cmake_v"; exit 1; }
echo PASS
