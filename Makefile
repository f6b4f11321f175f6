# Switchboard. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin
CONFIG ?= gateway.yaml
TEST_TIMEOUT ?= 20m

.PHONY: help
help: ## List targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build switchboard and the example providers into ./bin
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/switchboard ./cmd/switchboard
	$(GO) build -trimpath -o $(BIN)/notes ./examples/providers/notes
	$(GO) build -trimpath -o $(BIN)/echo ./examples/providers/echo

.PHONY: run
run: build ## Build, then serve the default gateway.yaml
	$(BIN)/switchboard serve --dev --config $(CONFIG)

.PHONY: npm
npm: e2e/node_modules/.installed ## Install the pinned third-party MCP servers used by e2e tests

e2e/node_modules/.installed: e2e/package.json e2e/package-lock.json
	cd e2e && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: test
test: npm kustomize ## Run the whole test suite (race detector on), then the cluster test
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(MAKE) deps
	$(GO) test -race -timeout=$(TEST_TIMEOUT) ./...
	$(MAKE) test-cluster

.PHONY: test-short
test-short: ## Fast tests only
	$(GO) test -race -short ./...

.PHONY: deps
deps: ## Fail if a sibling package imports another sibling
	@./.ci/check-deps.sh

.PHONY: lint
lint: ## golangci-lint, if installed
	@command -v golangci-lint >/dev/null || { echo "golangci-lint not installed"; exit 0; }; golangci-lint run ./...

.PHONY: bench
bench: build ## Benchmark the gateway against direct stdio; writes bench/results/latest.md
	$(GO) run ./bench/cmd/sbbench -out bench/results/latest.md

.PHONY: bench-features
bench-features: build ## What audit, access log and auth each cost per call; writes bench/results/features.md
	$(GO) run ./bench/cmd/sbbench -features -out bench/results/features.md

.PHONY: bench-audit
bench-audit: build ## What each audit mode (before/after the answer, fsync) costs per call; writes bench/results/audit.md
	$(GO) run ./bench/cmd/sbbench -features -features-audit -out bench/results/audit.md

.PHONY: docker
docker: ## Build the container images (needs docker, or podman/buildah as docker)
	@command -v docker >/dev/null || { echo "no docker client; with buildah: buildah bud --target runtime -t switchboard ."; exit 1; }
	docker build --target runtime -t switchboard:$(VERSION) .
	docker build --target runtime-node -t switchboard:$(VERSION)-node .

# kustomize, pinned, built from the Go module proxy into bin/ (the version
# builds with this repository's Go).
KUSTOMIZE_VERSION := v5.8.1
KUSTOMIZE_STAMP := $(BIN)/.kustomize-$(KUSTOMIZE_VERSION)

$(KUSTOMIZE_STAMP):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	@rm -f $(BIN)/.kustomize-*; touch $@

.PHONY: kustomize
kustomize: $(KUSTOMIZE_STAMP) ## Build the pinned kustomize into bin/

.PHONY: k8s-check
k8s-check: kustomize ## Render the Kubernetes kustomizations with kustomize and check every cross-reference
	KUSTOMIZE=$(abspath $(BIN))/kustomize $(GO) test -count=1 ./deploy/

.PHONY: test-cluster
# The cluster test runs alone, after the suite and without the race detector:
# its 100 users' node processes need the whole machine. It skips without
# PostgreSQL or HAProxy, unless $CI is set (.ci/run sets it), where it fails.
test-cluster: npm ## Three replicas on PostgreSQL behind HAProxy, 100 users, a replica killed (needs postgresql, haproxy)
	SWITCHBOARD_CLUSTER=1 $(GO) test -count=1 -run '^TestCluster$$' -timeout 20m -v ./e2e/

.PHONY: soak
soak: npm ## Long load and leak test (10,000 session cycles, 1,000 vanished clients)
	SOAK=1 $(GO) test -race -count=1 -run 'TestSessionChurnAndLeaks' -timeout 60m -v ./e2e/

FUZZTIME ?= 5m
.PHONY: fuzz
fuzz: ## Fuzz the request edge and the config parser (FUZZTIME each)
	$(GO) test -run '^$$' -fuzz '^FuzzCheckMessage$$' -fuzztime $(FUZZTIME) ./mux/
	$(GO) test -run '^$$' -fuzz '^FuzzLoadConfig$$' -fuzztime $(FUZZTIME) ./providers/

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
