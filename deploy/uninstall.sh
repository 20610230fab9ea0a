#!/usr/bin/env bash
# Removes what deploy/install.sh installed (run as root); install.sh copies
# it to /usr/local/bin/skiff-uninstall.sh.
#
#   skiff-uninstall.sh [--root DIR]
#
# It reads /etc/skiff/install.manifest and:
# 1. stops and disables the unit (systemd), or, without systemd, stops the
#    processes running /usr/local/bin/skiff;
# 2. clears the node: this node's pods (containerd namespace "skiff": tasks,
#    containers, images, the namespace), their network namespaces under
#    /run/skiff, the nftables tables `ip skiff_proxy` and
#    `inet <bridge>_guard`, the links skiff-svc0 and <bridge>, the host-gw
#    routes (proto 211) and the blackhole routes of the cluster and service
#    CIDRs. No `skiff` command does this: the agent leaves all of it on
#    purpose when it stops (pods and services keep working across a restart);
# 3. removes the data directory (default /var/lib/skiff), the pod logs
#    (/var/log/pods) and the kubeconfig of --write-kubeconfig, after
#    unmounting what pods mounted below them;
# 4. removes the binary, unit, environment file, this script, the manifest
#    and the directories install.sh created (when empty).
# Debian packages installed as dependencies (containerd, runc, CNI plugins,
# nftables, iproute2) stay, as other software may use them; so do the
# iptables chains of hostPort pods (the CNI portmap plugin's CNI-HOSTPORT-*)
# when pods were not deleted before.
#
# --root DIR removes an installation made with install.sh --root DIR: files
# only; the unit is not stopped and the host's containerd, network and
# processes are not touched. --clean-network with --root also clears the
# nftables tables, links and routes in the current network namespace (for
# tests in a namespace of their own).
set -euo pipefail

log() { echo "uninstall: $*"; }
die() {
	echo "uninstall: $*" >&2
	exit 2
}

root=/ clean_network=false
while [ $# -gt 0 ]; do
	case $1 in
	--root) [ $# -ge 2 ] || die "--root needs a value"; root=$2; shift ;;
	--root=*) root=${1#--root=} ;;
	--clean-network) clean_network=true ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument \"$1\" (usage: $0 [--root DIR])" ;;
	esac
	shift
done
[[ $root == /* ]] || die "--root \"$root\" is not an absolute path"
root=${root%/}
[ -n "$root" ] || { clean_network=true; [ "$(id -u)" = 0 ] || die "run as root"; }

manifest=/etc/skiff/install.manifest
if [ ! -f "$root$manifest" ]; then
	log "skiff is not installed here ($root$manifest is missing): nothing to do"
	exit 0
fi
units=() files=() dirs=() data=() kubeconfigs=() bridges=() routes=()
while read -r kind val; do
	case $kind in
	'' | '#'*) ;;
	unit) units+=("$val") ;;
	file) files+=("$val") ;;
	dir) dirs+=("$val") ;;
	data) data+=("$val") ;;
	kubeconfig) kubeconfigs+=("$val") ;;
	bridge) bridges+=("$val") ;;
	route) routes+=("$val") ;;
	*) die "$root$manifest: unknown line \"$kind $val\"" ;;
	esac
done <"$root$manifest"
# The paths are install.sh's; check them again before removing anything.
for p in ${data[@]+"${data[@]}"} ${kubeconfigs[@]+"${kubeconfigs[@]}"} ${files[@]+"${files[@]}"} ${dirs[@]+"${dirs[@]}"}; do
	case $p in
	/*/* | /[!/]*) ;;
	*) die "$root$manifest: refusing path \"$p\"" ;;
	esac
	case $p in *..*) die "$root$manifest: refusing path \"$p\"" ;; esac
done
for d in ${data[@]+"${data[@]}"}; do
	case $d in
	/usr | /usr/* | /etc | /bin | /sbin | /lib | /lib64 | /boot | /dev | /proc | /sys | /run | /var | /var/lib | /var/log | /home | /root | /tmp)
		die "$root$manifest: refusing to remove \"$d\"" ;;
	esac
done

# --- 1. stop ------------------------------------------------------------
if [ -z "$root" ]; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		for u in ${units[@]+"${units[@]}"}; do
			systemctl disable --now "$u" >/dev/null 2>&1 || true
			log "stopped and disabled $u"
		done
	fi
	# Without systemd (or a copy started by hand): the processes of the
	# installed binary, found by their executable, not by name.
	pids=()
	for exe in /proc/[0-9]*/exe; do
		# "(deleted)": a process of a binary an upgrade replaced.
		case $(readlink "$exe" 2>/dev/null) in
		/usr/local/bin/skiff | "/usr/local/bin/skiff (deleted)") ;;
		*) continue ;;
		esac
		pid=${exe#/proc/}
		pids+=("${pid%/exe}")
	done
	if [ "${#pids[@]}" -gt 0 ]; then
		log "stopping /usr/local/bin/skiff (pid ${pids[*]})"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		for _ in $(seq 1 60); do
			alive=()
			for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
			[ "${#alive[@]}" -gt 0 ] || break
			sleep 0.5
		done
		for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	fi
else
	log "under $root: not stopping anything, not touching the host's containerd"
fi

# --- 2. the node --------------------------------------------------------
if [ -z "$root" ] && command -v ctr >/dev/null && ctr version >/dev/null 2>&1; then
	ids=$(ctr -n skiff containers list -q 2>/dev/null || true)
	for id in $ids; do
		ctr -n skiff tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	for id in $ids; do
		ctr -n skiff tasks delete -f "$id" >/dev/null 2>&1 || true
		ctr -n skiff containers delete "$id" >/dev/null 2>&1 || true
	done
	imgs=$(ctr -n skiff images list -q 2>/dev/null || true)
	# shellcheck disable=SC2086 # one word per image reference
	[ -z "$imgs" ] || ctr -n skiff images remove $imgs >/dev/null 2>&1 || true
	ctr namespaces remove skiff >/dev/null 2>&1 || log "containerd namespace skiff not removed (not empty: ctr -n skiff content ls)"
	log "removed $(echo "$ids" | grep -c . || true) containers of the containerd namespace skiff"
fi
if [ -z "$root" ] && [ -d /run/skiff ]; then
	for ns in /run/skiff/netns/*; do
		[ -e "$ns" ] || continue
		umount -l "$ns" 2>/dev/null || true
	done
	rm -rf /run/skiff
fi
if [ "$clean_network" = true ]; then
	if command -v nft >/dev/null; then
		nft delete table ip skiff_proxy 2>/dev/null || true
		for b in ${bridges[@]+"${bridges[@]}"}; do
			nft delete table inet "${b//-/_}_guard" 2>/dev/null || true
		done
	fi
	for l in skiff-svc0 ${bridges[@]+"${bridges[@]}"}; do
		! ip link show "$l" >/dev/null 2>&1 || ip link delete "$l"
	done
	ip -4 route flush proto 211 2>/dev/null || true
	for r in ${routes[@]+"${routes[@]}"}; do
		! ip -4 route show exact "$r" type blackhole 2>/dev/null | grep -q . || ip -4 route del blackhole "$r"
	done
	log "removed the service proxy's and pod network's tables, links and routes"
fi

# --- 3. state -----------------------------------------------------------
for d in ${data[@]+"${data[@]}"}; do
	[ -e "$root$d" ] || continue
	# Mounts below it (emptyDir tmpfs and the like), deepest first.
	awk -v p="$root$d/" 'index($2 "/", p) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system -- "$root$d"
	log "removed $d"
done
for k in ${kubeconfigs[@]+"${kubeconfigs[@]}"}; do
	rm -f "$root$k"
done

# --- 4. files -----------------------------------------------------------
for f in ${files[@]+"${files[@]}"}; do
	[ "$f" = "$manifest" ] || rm -f "$root$f"
done
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl daemon-reload
fi
rm -f "$root$manifest"
# Deepest first; a directory something else put files in stays.
printf '%s\n' ${dirs[@]+"${dirs[@]}"} | sort -r | while read -r d; do
	[ -n "$d" ] || continue
	rmdir "$root$d" 2>/dev/null || log "kept $d: not empty"
done
log "skiff removed (installed packages stay: containerd runc containernetworking-plugins nftables iproute2)"
