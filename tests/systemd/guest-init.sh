#!/bin/bash
# guest-init.sh: PID 1 of the guest's fresh namespaces until it execs systemd.
# Builds the guest's root (an overlay of / whose writes go to a tmpfs), mounts
# fresh API file systems in it, waits for guest.sh's go-ahead, pivots into it
# and execs systemd. Started by guest.sh only; never run it by hand.
#
# usage: guest-init.sh STATE_DIR UNIT_TO_MASK... -- SHARED_DIR...
set -euo pipefail

state=$1
shift
masks=()
while [[ $# -gt 0 && $1 != -- ]]; do
	masks+=("$1")
	shift
done
[[ $# -gt 0 ]] && shift
shares=("$@")

# guest.sh holds both fifos open read-write, so opening them never blocks.
report() { printf '%s\n' "$*" >"$state/from_guest"; }
trap 'report "error: guest-init.sh line $LINENO: $BASH_COMMAND failed"' ERR

# The only descriptor that must outlive this script is unshare's own copy of
# the exit pipe (guest.sh learns from it that the guest is gone), not ours.
exec 9>&-

base=$state/guest
new=$base/root
mount -t tmpfs -o mode=0755 sockgate-guest "$base"
mkdir "$base/upper" "$base/work" "$new"
# Everything the guest writes lands in the tmpfs upper layer, never on the host.
mount -t overlay sockgate-guest \
	-o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$new"

# The source and build trees at their own paths (cmake_install.cmake names
# them absolutely), each as its own overlay: systemd-tmpfiles does not empty
# a mount point, so they survive even under /tmp, and writes such as
# install_manifest.txt stay in the guest too.
i=0
for dir in "${shares[@]}"; do
	i=$((i + 1))
	mkdir "$base/share$i" "$base/share$i/upper" "$base/share$i/work"
	mkdir -p "$new$dir"
	mount -t overlay sockgate-share \
		-o "lowerdir=$dir,upperdir=$base/share$i/upper,workdir=$base/share$i/work" "$new$dir"
done

# Kernel interfaces: a proc of the new PID namespace whose /proc/sys (global
# settings) is read-only, a read-only sysfs, and cgroup2 rooted at the guest's
# own cgroup through the cgroup namespace.
mount -t proc -o nosuid,nodev,noexec proc "$new/proc"
for p in sys sysrq-trigger; do
	[[ -e $new/proc/$p ]] || continue
	mount --bind "$new/proc/$p" "$new/proc/$p"
	mount -o remount,bind,ro "$new/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$new/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$new/sys/fs/cgroup"

# A minimal /dev: a few harmless host nodes and a private devpts instance.
mount -t tmpfs -o mode=0755,nosuid,size=4m sockgate-dev "$new/dev"
for n in null zero full random urandom tty; do
	touch "$new/dev/$n"
	mount --bind "/dev/$n" "$new/dev/$n"
done
mkdir -m 0755 "$new/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$new/dev/pts"
ln -s pts/ptmx "$new/dev/ptmx"
mkdir -m 1777 "$new/dev/shm"
mount -t tmpfs -o mode=1777,nosuid,nodev sockgate-shm "$new/dev/shm"
ln -s /proc/self/fd "$new/dev/fd"
ln -s /proc/self/fd/0 "$new/dev/stdin"
ln -s /proc/self/fd/1 "$new/dev/stdout"
ln -s /proc/self/fd/2 "$new/dev/stderr"

mount -t tmpfs -o mode=0755,nosuid,nodev sockgate-run "$new/run"
# A machine of its own: journal files and DynamicUser state key on it.
tr -d '-' </proc/sys/kernel/random/uuid >"$new/etc/machine-id"
hostname sockgate-guest

# guest.sh moves unshare out of the guest's cgroup (cgroup v2 allows no
# process in an inner node, and systemd makes this one inner), then says go.
report mounted
read -r go <"$state/to_guest"
[[ $go == go ]] || exit 1

cd "$new"
mkdir .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
# systemd moves mounts between namespaces (LoadCredential='s ramfs into
# /run/credentials/UNIT): with the private propagation unshare left, every
# service would see an empty $CREDENTIALS_DIRECTORY. This shares nothing with
# the host: the host's mounts are gone from this namespace.
mount --make-rshared /

# container= tells systemd it runs in a container whatever the host looks
# like (it would otherwise guess from files such as /.dockerenv): it then reads
# systemd.mask= from its own command line, not the host kernel's, and skips
# the set-up only a real machine needs. A clean environment, and no module
# loading or clock setting on the host's kernel.
exec env -i container=sockgate-guest \
	setpriv --bounding-set -sys_module,-sys_time,-wake_alarm \
	/lib/systemd/systemd --unit=basic.target "${masks[@]/#/systemd.mask=}"
