#!/usr/bin/env bash
# Installs what building and testing Skiff needs on Debian 12 (run as root).
# Idempotent: it only installs what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in make git ca-certificates; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq "${need[@]}"
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "Go 1.26 is required at /usr/local/go" >&2
	exit 1
fi
if ! command -v kubectl >/dev/null 2>&1; then
	echo "kubectl is required (expected at /usr/bin/kubectl) for the end-to-end tests" >&2
	exit 1
fi
