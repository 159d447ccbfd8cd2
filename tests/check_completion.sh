#!/bin/bash
# check_completion.sh SOURCE_DIR: the bash completion of sockgatectl, run by
# bash-completion's own _init_completion: commands, options, and the session
# ids, users and sources read from a sockgatectl (here a stand-in that prints
# what the daemon prints). Skips (77) without the bash-completion package.
set -o pipefail # bash-completion is not written for -e or -u
src=$1
bc=/usr/share/bash-completion/bash_completion
[[ -r $bc ]] || { echo "SKIP: no $bc (Debian package bash-completion)"; exit 77; }
# shellcheck source=/dev/null
source "$bc" || true
# shellcheck source=../etc/bash-completion/sockgatectl
source "$src/etc/bash-completion/sockgatectl"

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
chmod +x "$stub"
PATH=$dir:$PATH

# complete LINE: what completing the last word of LINE offers, sorted, one line.
complete_line()
{
	read -r -a COMP_WORDS <<<"$1"
	[[ $1 == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE=$1
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_sockgatectl
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}

expect()
{
	local got
	got=$(complete_line "$1")
	[[ $got == "$2" ]] || { echo "FAIL: \"$1\" completes to \"$got\", expected \"$2\""; exit 1; }
	echo "ok: \"$1\" -> $2"
}

expect "sockgatectl " "drain kill passes penalties reload sessions status upstreams "
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
echo PASS
