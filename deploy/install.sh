#!/usr/bin/env bash
# Installs Skiff on a Debian host as a systemd service (run as root):
#
#   deploy/install.sh [options] [server|agent] [skiff flags...]
#
#   deploy/install.sh server --cluster-init                  # first server
#   deploy/install.sh server --server https://S:6443 --token "$(cat /var/lib/skiff/server/token)"
#   deploy/install.sh agent --server https://S:6443 --token "$(skiff token create)"
#
# It installs the binary to /usr/local/bin/skiff, the Debian packages a node
# agent needs that are missing (containerd runc containernetworking-plugins
# nftables iproute2), the unit /etc/systemd/system/skiff.service (server) or
# skiff-agent.service (agent), its environment file /etc/skiff/<unit>.env
# (0600: SKIFF_URL and SKIFF_TOKEN, which skiff reads in place of --server
# and --token, so the token is not on a command line), and
# /usr/local/bin/skiff-uninstall.sh with the list of what it created
# (/etc/skiff/install.manifest) for deploy/uninstall.sh. Then it enables and
# (re)starts the unit when systemd runs the machine. Running it again with
# the same input changes nothing; changed flags or token rewrite the unit or
# environment file and restart the service.
#
# Options (anywhere on the line):
#   --binary PATH   the skiff binary (default: <repo>/bin/skiff; INSTALL_SKIFF_BIN)
#   --root DIR      install under DIR instead of / (image building, tests;
#                   INSTALL_SKIFF_ROOT): nothing is started, no packages installed
#   --skip-deps     do not install Debian packages (INSTALL_SKIFF_SKIP_DEPS=true)
#   --skip-start    do not enable or start the unit (INSTALL_SKIFF_SKIP_START=true)
# Environment as k3s's installer: INSTALL_SKIFF_EXEC ("server --cluster-init",
# words put before the command line's), SKIFF_URL and SKIFF_TOKEN (the
# role defaults to agent when SKIFF_URL is set, else server).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "install: $*"; }
die() {
	echo "install: $*" >&2
	exit 2
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

bin=${INSTALL_SKIFF_BIN:-$here/../bin/skiff}
root=${INSTALL_SKIFF_ROOT:-/}
skip_deps=${INSTALL_SKIFF_SKIP_DEPS:-false}
skip_start=${INSTALL_SKIFF_SKIP_START:-false}

# The words: INSTALL_SKIFF_EXEC's (split at blanks, as k3s), then ours.
words=()
if [ -n "${INSTALL_SKIFF_EXEC:-}" ]; then
	read -r -a words <<<"$INSTALL_SKIFF_EXEC"
fi
words+=("$@")

role='' url='' token='' cluster_init=false data_dir=/var/lib/skiff kubeconfig_flag=false disable_agent=false
write_kubeconfig='' pod_log_dir=/var/log/pods bridge=skiff0
cluster_cidr=10.42.0.0/16 service_cidr=10.43.0.0/16
flags=()
i=0
n=${#words[@]}
# value NAME: the value of flag NAME at words[i] (--name=V or --name V);
# advances i past it.
value() {
	local w=${words[$i]}
	if [[ $w == --$1=* ]]; then
		v=${w#--"$1"=}
	else
		i=$((i + 1))
		[ "$i" -lt "$n" ] || die "$w needs a value"
		v=${words[$i]}
	fi
}
while [ "$i" -lt "$n" ]; do
	w=${words[$i]}
	case $w in
	-h | --help) usage; exit 0 ;;
	--binary | --binary=*) value binary; bin=$v ;;
	--root | --root=*) value root; root=$v ;;
	--skip-deps) skip_deps=true ;;
	--skip-start) skip_start=true ;;
	--server | --server=*)
		value server
		url=${url:+$url,}$v
		;;
	--token | --token=*) value token; token=$v ;;
	*)
		if [ -z "$role" ] && [ "${#flags[@]}" -eq 0 ] && [[ $w != -* ]]; then
			case $w in
			server | agent) role=$w ;;
			*) die "unknown role \"$w\": want server or agent" ;;
			esac
		else
			# A skiff flag: kept for ExecStart; some also tell
			# uninstall.sh what the service will leave behind.
			start=$i
			case $w in
			--data-dir | --data-dir=*) value data-dir; data_dir=$v ;;
			--write-kubeconfig | --write-kubeconfig=*) value write-kubeconfig; write_kubeconfig=$v ;;
			--pod-log-dir | --pod-log-dir=*) value pod-log-dir; pod_log_dir=$v ;;
			--bridge | --bridge=*) value bridge; bridge=$v ;;
			--cluster-cidr | --cluster-cidr=*) value cluster-cidr; cluster_cidr=$v ;;
			--service-cidr | --service-cidr=*) value service-cidr; service_cidr=$v ;;
			--kubeconfig | --kubeconfig=*) kubeconfig_flag=true ;;
			--cluster-init | --cluster-init=true) cluster_init=true ;;
			--disable-agent | --disable-agent=true) disable_agent=true ;;
			esac
			flags+=("${words[@]:$start:$((i - start + 1))}")
		fi
		;;
	esac
	i=$((i + 1))
done
[ -n "$url" ] || url=${SKIFF_URL:-}
[ -n "$token" ] || token=${SKIFF_TOKEN:-}
if [ -z "$role" ]; then
	if [ -n "$url" ]; then role=agent; else role=server; fi
fi

# Everything is checked before anything is written.
case $role in
server)
	unit=skiff.service
	if [ -n "$url" ] && [ -z "$token" ]; then die "server --server $url needs --token (the server token, <data-dir>/server/token of a server of the cluster)"; fi
	if [ -z "$url" ] && [ -n "$token" ]; then die "server --token needs --server URL (a server of the cluster to join)"; fi
	case $url in *,*) die "server: one --server URL to join through, not \"$url\"" ;; esac
	if [ -n "$url" ] && [ "$cluster_init" = true ]; then die "server: --cluster-init starts a cluster, --server joins one: not both"; fi
	;;
agent)
	unit=skiff-agent.service
	disable_agent=false
	[ -n "$url" ] || die "agent needs --server URL (or SKIFF_URL): the server to join"
	if [ -z "$token" ] && [ "$kubeconfig_flag" = false ]; then die "agent needs --token (or SKIFF_TOKEN): a join token from \`skiff token create\` on a server"; fi
	;;
esac
for v in "$url" "$token"; do
	# The environment file holds them unquoted.
	[[ $v =~ ^[A-Za-z0-9_:/.,@=+-]*$ ]] || die "--server and --token may not hold blanks, quotes, \$ or backslashes: \"$v\""
done
# Paths as uninstall.sh will see them: no trailing or double slashes, no ..
norm() {
	case $1 in
	/*) realpath -ms -- "$1" ;;
	*) die "\"$1\" is not an absolute path" ;;
	esac
}
data_dir=$(norm "$data_dir")
pod_log_dir=$(norm "$pod_log_dir")
[ -z "$write_kubeconfig" ] || write_kubeconfig=$(norm "$write_kubeconfig")
for p in "$data_dir" "$pod_log_dir" ${write_kubeconfig:+"$write_kubeconfig"}; do
	case $p in
	/ | /usr | /usr/* | /etc | /bin | /sbin | /lib | /lib64 | /boot | /dev | /proc | /sys | /run | /var | /var/lib | /var/log | /home | /root | /tmp | *$'\n'*) die "refusing \"$p\" as a data directory (uninstall.sh removes it)" ;;
	esac
done
for f in ${flags[@]+"${flags[@]}"}; do
	case $f in *$'\n'*) die "a flag with a line break: \"$f\"" ;; esac
done
[[ $bridge =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--bridge \"$bridge\" is not an interface name"
for c in "$cluster_cidr" "$service_cidr"; do
	[[ $c =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] || die "\"$c\" is not an IPv4 CIDR"
done
[[ $root == /* ]] || die "--root \"$root\" is not an absolute path"
root=${root%/}
[ -x "$bin" ] || die "$bin: no skiff binary there (make build, or --binary PATH)"
version=$("$bin" version 2>/dev/null) || die "$bin version failed: not a skiff binary?"
[ -f "$here/uninstall.sh" ] || die "$here/uninstall.sh is missing"

etc=/etc/skiff
envfile=$etc/${unit%.service}.env
manifest=$etc/install.manifest
if [ -f "$root$manifest" ]; then
	other=$(awk '$1 == "unit" {print $2}' "$root$manifest")
	for u in $other; do
		[ "$u" = "$unit" ] || die "$u is installed here; run skiff-uninstall.sh first to install $unit"
	done
fi
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then die "run as root (or give --root DIR)"; fi

# systemd_word quotes one ExecStart argument: % and $ doubled (specifiers,
# variables), double quotes around anything but plain characters.
systemd_word() {
	local a=${1//%/%%}
	a=${a//\$/\$\$}
	if [[ -n $a && $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
		printf ' %s' "$a"
	else
		a=${a//\\/\\\\}
		printf ' "%s"' "${a//\"/\\\"}"
	fi
}

# --- packages -----------------------------------------------------------
if [ "$skip_deps" = true ]; then
	log "not installing packages (--skip-deps)"
elif [ -n "$root" ]; then
	die "packages are installed only on / (give --skip-deps with --root)"
elif [ "$disable_agent" = true ]; then
	log "no node agent here (--disable-agent): no packages needed"
else
	need=()
	for pkg in containerd runc containernetworking-plugins nftables iproute2; do
		dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
	done
	if [ "${#need[@]}" -gt 0 ]; then
		log "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq "${need[@]}" >/dev/null
	fi
fi

# --- files --------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
entries=()   # manifest lines
changed=()   # files written
# mkdirs DIR: creates DIR and its missing parents under the root, noting
# each one created so that uninstall.sh removes it again.
mkdirs() {
	local d=$1 missing=()
	while [ "$d" != / ] && [ ! -d "$root$d" ]; do
		missing=("$d" "${missing[@]}")
		d=$(dirname "$d")
	done
	for d in "${missing[@]}"; do
		mkdir -m 0755 "$root$d"
		entries+=("dir $d")
	done
}
# put SRC DEST MODE: DEST (a path on the target) becomes SRC's content
# with MODE, replaced atomically and only when it differs.
put() {
	local src=$1 dest=$2 mode=$3
	entries+=("file $dest")
	mkdirs "$(dirname "$dest")"
	if [ -f "$root$dest" ] && cmp -s "$src" "$root$dest" && [ "$(stat -c %a "$root$dest")" = "$mode" ]; then
		return
	fi
	cp "$src" "$root$dest.new"
	chmod "$mode" "$root$dest.new"
	mv -f "$root$dest.new" "$root$dest"
	changed+=("$dest")
}

put "$bin" /usr/local/bin/skiff 755
put "$here/uninstall.sh" /usr/local/bin/skiff-uninstall.sh 755

{
	echo "# Written by deploy/install.sh for $unit (EnvironmentFile): skiff reads"
	echo "# SKIFF_URL and SKIFF_TOKEN in place of --server and --token."
	[ -z "$url" ] || echo "SKIFF_URL=$url"
	[ -z "$token" ] || echo "SKIFF_TOKEN=$token"
} >"$tmp/env"
put "$tmp/env" "$envfile" 600

exec_start="/usr/local/bin/skiff $role"
for f in ${flags[@]+"${flags[@]}"}; do
	exec_start+=$(systemd_word "$f")
done
deps="network-online.target"
[ "$disable_agent" = true ] || deps+=" containerd.service"
cat >"$tmp/unit" <<EOF
# Written by deploy/install.sh; deploy/uninstall.sh removes it.
[Unit]
Description=Skiff $role
Documentation=https://github.com/skiffhq/skiff
Wants=$deps
After=$deps

[Service]
# skiff does not call sd_notify: started once it is executed.
Type=exec
EnvironmentFile=-$envfile
ExecStart=$exec_start
# Pods run under the host's containerd (their shims are in
# containerd.service), so stopping skiff never stops them. skiff's own
# children are short-lived (nft, ip, CNI plugins): SIGTERM to skiff alone,
# which finishes its work, then whatever is left is killed.
KillMode=mixed
Restart=always
RestartSec=5s
# etcd, watches and one connection per node and pod log stream.
LimitNOFILE=1048576
TasksMax=infinity

[Install]
WantedBy=multi-user.target
EOF
put "$tmp/unit" "/etc/systemd/system/$unit" 644

# The manifest: what this and earlier runs created (lines are kept across
# runs, so a directory created by the first run stays listed), plus what
# the service leaves on the node.
entries+=("unit $unit" "data $data_dir")
[ -z "$write_kubeconfig" ] || entries+=("kubeconfig $write_kubeconfig")
if [ "$disable_agent" = false ]; then
	entries+=("data $pod_log_dir" "bridge $bridge" "route $cluster_cidr" "route $service_cidr")
fi
mkdirs "$etc"
entries+=("file $manifest")
{
	[ ! -f "$root$manifest" ] || grep -v '^#' "$root$manifest"
	printf '%s\n' "${entries[@]}"
} | sort -u >"$tmp/lines"
{
	echo "# What deploy/install.sh created; read by skiff-uninstall.sh."
	cat "$tmp/lines"
} >"$tmp/manifest"
put "$tmp/manifest" "$manifest" 644

# --- start --------------------------------------------------------------
if [ "${#changed[@]}" -eq 0 ]; then
	log "nothing changed: $unit and its files are as they were ($version)"
else
	log "wrote ${changed[*]} ($version)"
fi
unit_changed=false
for f in ${changed[@]+"${changed[@]}"}; do
	[ "$f" != "/etc/systemd/system/$unit" ] || unit_changed=true
done
if [ -n "$root" ]; then
	log "installed under $root: not started"
elif [ "$skip_start" = true ]; then
	log "not starting $unit (--skip-start)"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	[ "$unit_changed" = false ] || systemctl daemon-reload
	systemctl enable --quiet "$unit"
	if [ "${#changed[@]}" -gt 0 ]; then
		systemctl restart "$unit"
		log "$unit enabled and (re)started; logs: journalctl -u $unit"
	else
		systemctl start "$unit"
		log "$unit enabled and running"
	fi
else
	log "systemd is not running this machine (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown); a container?):"
	log "$unit is installed but not started. To run skiff by hand:"
	log "  set -a; . $envfile; set +a; /usr/local/bin/skiff $role$(printf ' %q' ${flags[@]+"${flags[@]}"})"
fi
