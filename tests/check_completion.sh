#!/bin/bash
# check_completion.sh SOURCE_DIR: the bash completions in etc/bash-completion,
# each run by bash-completion's own _init_completion. sockgatectl: commands,
# options, and the session ids, users and sources read from a sockgatectl
# (here a stand-in that prints what the daemon prints). sockgate,
# sockgate-passwd, sockgate-server, sockgate-client: options and their values,
# files, the users of a credentials file (from a stand-in sockgate-passwd -l),
# running daemons' ids (a stand-in pgrep), known hosts (a hosts file of the
# test's own). Skips (77) without the bash-completion package.
set -o pipefail # bash-completion is not written for -e or -u
src=$1
bc=/usr/share/bash-completion/bash_completion
[[ -r $bc ]] || { echo "SKIP: no $bc (Debian package bash-completion)"; exit 77; }
# shellcheck source=/dev/null
source "$bc" || true
# shellcheck source=../etc/bash-completion/sockgatectl
source "$src/etc/bash-completion/sockgatectl"
# shellcheck source=../etc/bash-completion/sockgate
source "$src/etc/bash-completion/sockgate"
# shellcheck source=../etc/bash-completion/sockgate-passwd
source "$src/etc/bash-completion/sockgate-passwd"
# shellcheck source=../etc/bash-completion/sockgate-server
source "$src/etc/bash-completion/sockgate-server"
# shellcheck source=../etc/bash-completion/sockgate-client
source "$src/etc/bash-completion/sockgate-client"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
stub=$dir/sockgatectl
cat >"$stub" <<'STUB'
#!/bin/sh
# What sockgatectl --json prints for a daemon with one session logging in.
for a; do case $a in
sessions) printf '[{"id":"5f3a11c20000000000000001","gateway":"demo","user":"alice","client":"127.0.0.61:40000","upstream":"127.0.0.1:8080","target":"","state":"relaying","age_s":3,"idle_s":1,"bytes_in":6,"bytes_out":26,"tls":""},'
	  printf '{"id":"5f3a11c20000000000000002","gateway":"demo","user":"bob","client":"[::1]:40002","upstream":"127.0.0.1:8080","target":"","state":"relaying","age_s":2,"idle_s":2,"bytes_in":0,"bytes_out":0,"tls":""},'
	  printf '{"id":"5f3a11c20000000000000003","gateway":"demo","user":"","client":"127.0.0.9:40003","upstream":"","target":"","state":"login","age_s":0,"idle_s":0,"bytes_in":0,"bytes_out":0,"tls":""}]\n' ;;
penalties) printf '[{"source":"192.0.2.7/32","state":"refused","left_s":14,"logging_in":0}]\n' ;;
esac; done
STUB
cat >"$dir/sockgate-passwd" <<'STUB'
#!/bin/sh
# What sockgate-passwd -l prints for a file with two users (only that file).
[ "$1" = -l ] && [ "$2" = users.sg ] || exit 1
printf 'alice\ttotp(SHA1,6,30)\nbob\tlocked\texpires=2027-01-01\n'
STUB
cat >"$dir/pgrep" <<'STUB'
#!/bin/sh
# Two running daemons, and nothing else, whatever runs on this machine.
[ "$1" = -x ] && [ "$2" = sockgate ] && printf '4242\n4343\n'
STUB
chmod +x "$stub" "$dir/sockgate-passwd" "$dir/pgrep"
PATH=$dir:$PATH
# Host names from the test's own hosts file only: no ~/.ssh/known_hosts.
printf '192.0.2.10 gw-sgtest.example\n192.0.2.11 gw-sgtest2.example\n' >"$dir/hosts"
HOSTFILE=$dir/hosts
HOME=$dir
# Files to complete, in a directory of their own.
mkdir "$dir/files"
touch "$dir/files/users.sg" "$dir/files/sockgate.conf" "$dir/files/notes.txt" \
	"$dir/files/ca.pem" "$dir/files/ca.txt"
cd "$dir/files" || exit 1

# complete LINE: what completing the last word of LINE offers, sorted, one line.
complete_line()
{
	read -r -a COMP_WORDS <<<"$1"
	[[ $1 == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE=$1
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	# The function the program's completion file registered.
	local spec
	spec=$(complete -p "${COMP_WORDS[0]}") || { echo "no completion for ${COMP_WORDS[0]}"; return; }
	spec=${spec#*-F }
	"${spec%% *}"
	# Nothing at all for no completion (printf would print one empty line).
	((${#COMPREPLY[@]})) || return 0
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}

expect()
{
	local got
	got=$(complete_line "$1")
	[[ $got == "$2" ]] || { echo "FAIL: \"$1\" completes to \"$got\", expected \"$2\""; exit 1; }
	echo "ok: \"$1\" -> $2"
}

# expect_has LINE WORD...: the completions of LINE include every WORD (for
# lists that depend on the machine, such as its addresses).
expect_has()
{
	local got line=$1 w
	shift
	got=" $(complete_line "$line")"
	for w; do
		[[ $got == *" $w "* ]] || { echo "FAIL: \"$line\" completes to \"$got\", without \"$w\""; exit 1; }
	done
	echo "ok: \"$line\" -> includes $*"
}

expect "sockgatectl " "drain kill passes penalties reload restart sessions status upstreams "
expect "sockgatectl ki" "kill "
expect "sockgatectl --js" "--json "
expect "sockgatectl kill " "5f3a11c20000000000000001 5f3a11c20000000000000002 5f3a11c20000000000000003 "
expect "sockgatectl kill --user " "alice bob "
expect "sockgatectl kill --source " "127.0.0.61 127.0.0.9 ::1 "
expect "sockgatectl sessions --" "--gateway --user "
expect "sockgatectl sessions --gateway " "demo "
expect "sockgatectl penalties " "lift "
expect "sockgatectl penalties lift " "192.0.2.7/32 "
expect "sockgatectl passes revoke --" "--source --user "

expect "sockgate -" "--config --debug --help --reload --test --version -V -c -d -h -t "
expect "sockgate --c" "--config "
expect "sockgate -c " "sockgate.conf "
expect "sockgate -t --config sock" "sockgate.conf "
expect "sockgate --reload " "4242 4343 "
expect "sockgate --reload 43" "4343 "

expect "sockgate-passwd --m" "--method "
expect "sockgate-passwd -m " "bcrypt sha512 yescrypt "
expect "sockgate-passwd --totp-algorithm SHA" "SHA1 SHA256 SHA512 "
expect "sockgate-passwd --totp-digits " "6 7 8 "
expect "sockgate-passwd --expires n" "never "
expect "sockgate-passwd --totp-r" "--totp-remove "
expect "sockgate-passwd --lock us" "users.sg "
expect "sockgate-passwd --lock users.sg " "alice bob "
expect "sockgate-passwd -m bcrypt users.sg b" "bob "
expect "sockgate-passwd -c users.sg " ""
expect "sockgate-passwd -l users.sg " ""

expect "sockgate-server --" "--echo --help --idle-timeout --listen --max-children --port --tag --version "
expect "sockgate-server -p 8080 --e" "--echo "
expect "sockgate-server -p " ""
expect_has "sockgate-server -l " "'*'" 127.0.0.1
expect "sockgate-server --listen 127.0.0." "127.0.0.1 "

expect "sockgate-client --" "--help --password-prompt --timeout --tls --version "
expect "sockgate-client --tls --" "--ca --cert --help --insecure --key --password-prompt --servername --timeout --tls --version "
expect "sockgate-client --tls --ca " "ca.pem "
expect "sockgate-client --tls --servername gw-sgtest2" "gw-sgtest2.example "
expect "sockgate-client gw-sg" "gw-sgtest.example gw-sgtest2.example "
expect "sockgate-client -t 5 gw-sgtest.example " ""
echo PASS
