#!/usr/bin/env bash
# Runs a multi-node Skiff cluster on this one machine for demos (run as root):
#
#   deploy/multinode.sh up [N]   # N nodes (default 2); runs until ^C, then removes everything
#   deploy/multinode.sh down     # removes what a killed `up` left behind
#
# `skiff server --disable-agent` runs on the host, bound to the bridge
# skiffmn<k> (10.250.<k>.1/24); every node is a `skiff agent` in its own
# network namespace skiff-mn<k>-<i> with address 10.250.<k>.<10+i> on that
# bridge (no default route: nothing leaves the node network) and the
# machine's shared containerd. The pod network across the nodes is host-gw
# (nodeagent/network/README.md). The layout is internal/multinode's, the Go
# harness the tests use; pick another SKIFF_MN_INSTANCE than the tests' (7).
#
# Environment: SKIFF_BIN (default <repo>/bin/skiff), SKIFF_MN_INSTANCE
# (k, default 1), SKIFF_MN_DIR (state, default /var/tmp/skiff-multinode-<k>),
# SKIFF_MN_CLUSTER_CIDR (default 10.42.64.0/18), SKIFF_MN_PORT (API port,
# default 16443). Needs iproute2, nsenter, openssl, ctr and kubectl.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${SKIFF_BIN:-$repo/bin/skiff}
k=${SKIFF_MN_INSTANCE:-1}
dir=${SKIFF_MN_DIR:-/var/tmp/skiff-multinode-$k}
cluster_cidr=${SKIFF_MN_CLUSTER_CIDR:-10.42.64.0/18}
port=${SKIFF_MN_PORT:-16443}
bridge=skiffmn$k
host_ip=10.250.$k.1
subnet=10.250.$k.0/24
prefix=skiff-mn$k-

log() { echo "multinode: $*" >&2; }

# fail shows the tails of the logs (the EXIT trap removes them) and exits.
fail() {
	log "$*"
	local f
	for f in "$dir"/server.log "$dir"/"$prefix"*/agent.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
	done
	exit 1
}

# down removes everything instance k created, whatever state it is in.
down() {
	set +e
	local kc=$dir/server/admin.kubeconfig
	if [ -f "$kc" ] && [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
		# Let the agents tear their pods down while they still run.
		kubectl --kubeconfig "$kc" delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1
		for _ in $(seq 1 40); do
			[ -z "$(node_containers)" ] && break
			sleep 0.5
		done
	fi
	local ns
	for ns in $(ip netns list 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1 {print $1}'); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -TERM 2>/dev/null
	done
	sleep 1
	for ns in $(ip netns list 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1 {print $1}'); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
	done
	if [ -f "$dir/server.pid" ]; then
		local pid
		pid=$(cat "$dir/server.pid")
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$pid" 2>/dev/null
	fi
	local id nsfile
	for id in $(node_containers); do
		nsfile=$(ctr -n skiff containers info "$id" 2>/dev/null | grep -o '"path": *"[^"]*"' | grep -o '/[^"]*netns[^"]*' | head -n 1)
		ctr -n skiff tasks kill -s SIGKILL "$id" >/dev/null 2>&1
		ctr -n skiff tasks delete -f "$id" >/dev/null 2>&1
		ctr -n skiff containers delete "$id" >/dev/null 2>&1
		if [ -n "$nsfile" ]; then
			umount -l "$nsfile" 2>/dev/null
			rm -f "$nsfile"
		fi
	done
	for ns in $(ip netns list 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1 {print $1}'); do
		ip netns del "$ns"
	done
	ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge"
	if [ -d "$dir" ]; then
		# emptyDir tmpfs and the like under the agents' data folders.
		grep -o " $dir/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n 1 umount -l 2>/dev/null
		rm -rf "$dir"
	fi
	set -e
}

node_containers() {
	ctr -n skiff containers list -q "labels.\"io.skiff.node\"~=^$prefix" 2>/dev/null || true
}

# node_certs issues node $1's client and serving certificates (IP $2)
# from the cluster CA, as node join would, and writes its kubeconfig.
node_certs() {
	local name=$1 ip=$2 d=$3 tls=$dir/server/tls
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/client.key" 2>/dev/null
	openssl req -new -key "$d/client.key" -subj "/O=system:nodes/CN=system:node:$name" -out "$d/client.csr" 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' >"$d/client.ext"
	openssl x509 -req -in "$d/client.csr" -CA "$tls/server-ca.crt" -CAkey "$tls/server-ca.key" -CAcreateserial \
		-days 7 -extfile "$d/client.ext" -out "$d/client.crt" 2>/dev/null
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/serving.key" 2>/dev/null
	openssl req -new -key "$d/serving.key" -subj "/O=system:nodes/CN=system:node:$name" -out "$d/serving.csr" 2>/dev/null
	printf 'extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:%s,IP:%s\n' "$name" "$ip" >"$d/serving.ext"
	openssl x509 -req -in "$d/serving.csr" -CA "$tls/server-ca.crt" -CAkey "$tls/server-ca.key" -CAcreateserial \
		-days 7 -extfile "$d/serving.ext" -out "$d/serving.crt" 2>/dev/null
	cp "$tls/server-ca.crt" "$d/ca.crt"
	local kc=$d/kubeconfig
	kubectl config --kubeconfig "$kc" set-cluster skiff --server "https://$host_ip:$port" --certificate-authority "$d/ca.crt" --embed-certs >/dev/null
	kubectl config --kubeconfig "$kc" set-credentials node --client-certificate "$d/client.crt" --client-key "$d/client.key" --embed-certs >/dev/null
	kubectl config --kubeconfig "$kc" set-context skiff --cluster skiff --user node >/dev/null
	kubectl config --kubeconfig "$kc" use-context skiff >/dev/null
}

up() {
	local n=${1:-2}
	case $n in '' | *[!0-9]*) log "node count $n is not a number"; exit 2 ;; esac
	if [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then log "node count $n: want 1–200"; exit 2; fi
	[ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }
	[ -x "$bin" ] || { log "$bin not found (make build, or set SKIFF_BIN)"; exit 1; }
	for b in ip nsenter openssl ctr kubectl; do
		command -v "$b" >/dev/null || { log "$b is not installed"; exit 1; }
	done
	down
	trap 'log "stopping"; down' EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$dir"

	ip link add "$bridge" type bridge
	ip addr add "$host_ip/24" dev "$bridge"
	ip link set "$bridge" up

	setsid "$bin" server --data-dir "$dir/server" --bind-address "$host_ip" --https-listen-port "$port" \
		--disable-agent --cluster-cidr "$cluster_cidr" --etcd-client-port 0 --etcd-peer-port 0 \
		--disable dns,ingress,dashboard,etcd-snapshot >"$dir/server.log" 2>&1 </dev/null &
	echo $! >"$dir/server.pid"
	local kc=$dir/server/admin.kubeconfig
	for _ in $(seq 1 120); do
		[ -f "$kc" ] && kubectl --kubeconfig "$kc" get --raw /readyz >/dev/null 2>&1 && break
		kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || fail "server exited"
		sleep 0.5
	done
	kubectl --kubeconfig "$kc" get --raw /readyz >/dev/null || fail "server not ready"

	local i name ip d veth
	for i in $(seq 1 "$n"); do
		name=$prefix$i ip=10.250.$k.$((10 + i)) d=$dir/$name veth=skmn${k}h$i
		mkdir -p "$d/agent/images"
		ip netns add "$name"
		ip -n "$name" link set lo up
		ip link add "$veth" type veth peer name eth0 netns "$name"
		ip link set "$veth" master "$bridge" up
		ip -n "$name" addr add "$ip/24" dev eth0
		ip -n "$name" link set eth0 up
		node_certs "$name" "$ip" "$d"
		# nsenter --net only: `ip netns exec` would give the agent a
		# private mount namespace, hiding pod netns mounts from containerd.
		setsid nsenter --net="/run/netns/$name" -- "$bin" agent --kubeconfig "$d/kubeconfig" \
			--data-dir "$d" --node-name "$name" --node-ip "$ip" --cluster-cidr "$cluster_cidr" \
			--bridge skiffpod0 --pod-egress-cidrs "$subnet" --pod-log-dir "$d/logs" \
			--tls-cert-file "$d/serving.crt" --tls-private-key-file "$d/serving.key" --client-ca-file "$d/ca.crt" \
			--logs-elasticsearch-url= >"$d/agent.log" 2>&1 </dev/null &
	done
	log "waiting for $n nodes"
	for _ in $(seq 1 120); do
		[ "$(kubectl --kubeconfig "$kc" get nodes --no-headers 2>/dev/null | wc -l)" -eq "$n" ] && break
		sleep 0.5
	done
	kubectl --kubeconfig "$kc" wait --for=condition=Ready node --all --timeout=90s >/dev/null 2>&1 &&
		[ "$(kubectl --kubeconfig "$kc" get nodes --no-headers 2>/dev/null | wc -l)" -eq "$n" ] ||
		fail "nodes not ready"
	kubectl --kubeconfig "$kc" get nodes -o custom-columns=NAME:.metadata.name,IP:.status.addresses[0].address,PODCIDR:.spec.podCIDR
	log "ready: export KUBECONFIG=$kc   (^C stops the cluster and removes everything)"
	while kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; do sleep 2; done
	fail "server exited"
}

case ${1:-} in
up) shift; up "$@" ;;
down) down ;;
*) echo "usage: $0 up [N] | down" >&2; exit 2 ;;
esac
