#!/usr/bin/env bash
# Installs what building and testing Skiff needs on Debian 12 (run as root).
# Idempotent: it only installs what is missing, starts containerd only when
# its socket does not answer, and adds only the routes that are missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in make git ca-certificates containerd runc containernetworking-plugins shellcheck \
	busybox-static nftables iproute2 chromium etcd-server systemd; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq "${need[@]}"
fi
# The tests of deploy/install.sh run shellcheck and systemd-analyze (package
# systemd; it is not started) on the scripts and the units they write.
# etcd-server: only the external-datastore test runs its binary (three
# members on free loopback ports). Its own service would take 2379/2380,
# the embedded etcd's default ports, so it stays off.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now etcd >/dev/null 2>&1 || true
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "Go 1.26 is required at /usr/local/go" >&2
	exit 1
fi
# The dashboard front end (web/): node 20 and npm are expected on the
# machine; dependencies come from package-lock.json.
if ! command -v npm >/dev/null 2>&1; then
	echo "node 20 and npm are required to build the dashboard front end" >&2
	exit 1
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$repo/node_modules" ]; then
	(cd "$repo" && npm ci --no-audit --no-fund)
fi
if ! command -v kubectl >/dev/null 2>&1; then
	echo "kubectl is required (expected at /usr/bin/kubectl) for the end-to-end tests" >&2
	exit 1
fi
# VictoriaLogs: a third-party Elasticsearch-bulk sink the log shipper's tests
# ship to (addons/logging/shipper). About 3 minutes to build, only when missing.
if ! command -v victoria-logs >/dev/null 2>&1; then
	GOBIN=/usr/local/bin PATH="/usr/local/go/bin:$PATH" go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1
fi

# containerd: the node agent's runtime. Use systemd when it runs the
# machine; otherwise supervise the daemon in the background ourselves.
sock=/run/containerd/containerd.sock
containerd_up() { ctr --address "$sock" version >/dev/null 2>&1; }
if ! containerd_up; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl enable --now containerd >/dev/null 2>&1 || systemctl start containerd
	else
		mkdir -p /var/log
		# Its own session: stopping the script's process group (a test
		# run interrupted) must not take the daemon down with it.
		setsid nohup containerd >>/var/log/containerd.log 2>&1 </dev/null &
		disown || true
	fi
	for _ in $(seq 1 60); do
		containerd_up && break
		sleep 0.5
	done
	if ! containerd_up; then
		echo "containerd did not come up on $sock (see /var/log/containerd.log)" >&2
		exit 1
	fi
fi

# Blackhole the cluster's pod and service ranges so that nothing addressed to
# them ever leaves this machine. The agent's own pod CIDR (a /24 on its
# bridge) is more specific and still wins.
for cidr in 10.42.0.0/16 10.43.0.0/16; do
	ip route show type blackhole "$cidr" | grep -q . || ip route add blackhole "$cidr"
done
