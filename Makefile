# Skiff build. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
# The Go toolchain: go1.27.3, which the go command fetches from the module
# proxy (the machine's Go 1.26.8 standard library has called
# vulnerabilities that `make vulncheck` reports). go.mod stays at go 1.26,
# so GODEBUG defaults do not change.
export GOTOOLCHAIN ?= go1.27.3
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# -s -w: no symbol table or DWARF (as upstream's release builds); stack
# traces and pprof still resolve through the pclntab. 141 MB -> 98 MB.
LDFLAGS := -s -w -X github.com/skiffhq/skiff/version.gitCommit=$(VERSION)
DATA_DIR ?= /var/lib/skiff
PKGS_RACE := ./controlplane/... ./server/... ./internal/... ./backend/...
# Outside PKGS_RACE: the packages whose tests run real pods, import images
# into this machine's containerd, or change the host's network namespaces,
# bridges or nftables. test-go runs them one at a time and the other
# packages two at a time. A new package that does any of this goes here.
PKGS_NODE := $(addprefix github.com/skiffhq/skiff/,addons/dns/integration addons/ingress/integration \
	addons/logging/shipper/integration addons/metrics/integration cmd/skiff \
	nodeagent/agent nodeagent/network nodeagent/proxy nodeagent/runtime)

.PHONY: help web test-web build run test test-go test-e2e test-chaos lint fmt vet boundaries bench fuzz vulncheck clean deps

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

web: ## build the dashboard front end into backend/webdist (embedded by bin/skiff)
	[ -d node_modules ] || npm ci --no-audit --no-fund
	npm run build

test-web: ## Vitest unit tests of the dashboard front end
	[ -d node_modules ] || npm ci --no-audit --no-fund
	npm test

build: web ## build bin/skiff and bin/skiff-bench
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/skiff ./cmd/skiff
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/skiff-bench ./cmd/skiff-bench

run: build ## build and run `skiff server` on this machine
	./bin/skiff server --data-dir $(DATA_DIR)

deps: ## install what the build and tests need on Debian (root)
	./deploy/install-deps.sh

test: lint test-web test-go test-e2e vulncheck ## run every test (test-e2e includes the dashboard browser test)

test-go: build ## unit and integration tests (race detector on the concurrent packages)
	$(GO) test -count=1 -race -timeout 30m $(PKGS_RACE)
	# Code built only with -tags failpoints: its parser and the shipper killed between ack and checkpoint.
	$(GO) test -count=1 -tags failpoints -run 'Failpoints|TestKilledBeforeCheckpoint' ./internal/failpoint ./addons/logging/shipper
	# The packages that touch no containerd, host network namespace or
	# nftables, two at a time (go test's default -p on this machine).
	$(GO) test -count=1 -timeout 30m $(filter-out $(PKGS_NODE),$(shell $(GO) list ./... | grep -v -e /controlplane/ -e /server -e /internal/ -e /backend -e /e2e))
	# One package at a time: the node agent, proxy and DNS pod tests share this
	# machine's containerd, images and netfilter, and disturb each other when
	# they run at once.
	$(GO) test -count=1 -p 1 -timeout 30m $(PKGS_NODE)

test-e2e: build ## end-to-end tests: the real kubectl against bin/skiff
	# The failpoint chaos test needs the server built with its failpoints.
	$(GO) build -tags failpoints -o bin/skiff-failpoints ./cmd/skiff
	SKIFF_BIN=$(CURDIR)/bin/skiff SKIFF_FAILPOINTS_BIN=$(CURDIR)/bin/skiff-failpoints $(GO) test -count=1 -timeout 30m ./e2e/...
	# Helm's Go SDK as a client; its own module keeps Helm out of go.mod.
	cd e2e/helm && SKIFF_BIN=$(CURDIR)/bin/skiff $(GO) test -count=1 -timeout 10m ./...

lint: fmt vet boundaries ## gofmt, go vet and import boundaries

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags failpoints ./internal/failpoint ./controlplane/storage ./internal/chaos ./addons/logging/shipper

boundaries: ## only controlplane may import controlplane/storage
	@bad=$$($(GO) list -f '{{.ImportPath}}: {{join .Imports " "}}' ./... | grep -v '^github.com/skiffhq/skiff/controlplane/' | grep -v '^github.com/skiffhq/skiff/server' | grep -v '^github.com/skiffhq/skiff/cmd/skiff-bench' | grep 'skiff/controlplane/storage' || true); \
	if [ -n "$$bad" ]; then echo "import boundary violated:"; echo "$$bad"; exit 1; fi

CHAOS_DURATION ?= 5m
test-chaos: build ## fault injection for CHAOS_DURATION: API writes with a ledger while the server is SIGKILLed at random (test-e2e runs a 20 s form)
	$(GO) build -tags failpoints -o bin/skiff-failpoints ./cmd/skiff
	SKIFF_BIN=$(CURDIR)/bin/skiff SKIFF_FAILPOINTS_BIN=$(CURDIR)/bin/skiff-failpoints SKIFF_CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -count=1 -timeout 90m -run TestChaos -v ./e2e/

bench: build ## run the benchmarks (each prints one JSON object)
	./bin/skiff-bench api --embedded
	./bin/skiff-bench controllers
	./bin/skiff-bench ha
	./bin/skiff-bench dashboard

# Fuzz targets as package:Name; `go test -fuzz` runs one target per call.
# Seeds and crashers found are kept in <package>/testdata/fuzz/<Name>/ and
# run as ordinary tests by test-go.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./controlplane/apiserver:FuzzDecodeObject ./controlplane/apiserver:FuzzDecodeRoundTrip \
	./controlplane/apiserver:FuzzPatch ./controlplane/apiserver:FuzzPatchIdempotent \
	./controlplane/apiserver:FuzzSelectors ./controlplane/apiserver:FuzzWithRV \
	./controlplane/apiserver:FuzzRequestInfo ./controlplane/apiserver:FuzzDecodeProtobuf ./addons/dns:FuzzServeDNS ./addons/dns:FuzzServerPackets \
	./addons/ingress:FuzzIngressRequest ./nodeagent/crilog:FuzzParse ./nodeagent/crilog:FuzzWriteRead \
	./backend:FuzzClientMessage ./nodeagent/streaming:FuzzParseOptions \
	./nodeagent/streaming:FuzzRemoteCommandFrames ./nodeagent/proxy:FuzzParseFlow

fuzz: ## run each fuzz target in turn for FUZZTIME (default 30s)
	@set -e; for pt in $(FUZZ_TARGETS); do \
		echo "== $$pt ($(FUZZTIME))"; \
		$(GO) test $${pt%%:*} -run '^$$' -fuzz "^$${pt##*:}\$$" -fuzztime $(FUZZTIME); \
	done

# govulncheck reads its database from vuln.go.dev, which CI cannot reach;
# the Go module proxy serves golang.org/x/vulndb, whose data/osv folder
# deploy/vulndb/index.go turns into the database layout govulncheck reads.
# VULNDB_VERSION=latest takes the newest published data.
GOVULNCHECK_VERSION ?= v1.9.0
VULNDB_VERSION ?= latest
vulncheck: ## govulncheck with an offline database from the module proxy; fails on a called vulnerable symbol
	@set -e; dir=$$(cd / && $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -d "$$dir/data/osv" || { echo "vulncheck: no golang.org/x/vulndb data from the module proxy" >&2; exit 1; }; \
	db=$$(mktemp -d); trap 'rm -rf "$$db"' EXIT; \
	$(GO) run deploy/vulndb/index.go -vulns "$$dir/data/osv" -out "$$db"; \
	$(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -db "file://$$db" ./...

clean:
	rm -rf bin
