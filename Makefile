# tollgate Makefile (kubebuilder style).
SHELL := /usr/bin/env bash
GO ?= go
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The container image `make docker-build` tags (docker, or CONTAINER_TOOL=podman).
IMG ?= ghcr.io/tollgate-dev/tollgate:$(VERSION)
CONTAINER_TOOL ?= docker
FUZZTIME ?= 60s

.PHONY: all
all: build

##@ Development

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=tollgate paths="./pkg/controller/..." output:rbac:artifacts:config=config/rbac
	@# The chart ships the same CRD (Helm installs crds/ as is; a copy, not a
	@# symlink, so that any way of packaging or pulling the chart keeps it).
	rm -f charts/tollgate/crds/*.yaml && cp config/crd/bases/*.yaml charts/tollgate/crds/
	@# The chart's PrometheusRule renders the alerts of config/monitoring.
	cp config/monitoring/prometheusrule.yaml charts/tollgate/files/prometheusrule.yaml

.PHONY: verify-generated
verify-generated: generate manifests ## Fail when generated files are stale.
	@git diff --exit-code -- api config/crd config/rbac charts/tollgate/crds charts/tollgate/files || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config/crd config/rbac charts/tollgate/crds charts/tollgate/files)" || { git status --porcelain -- api config/crd config/rbac charts/tollgate/crds charts/tollgate/files; echo "untracked generated files: run 'make generate manifests' and commit"; exit 1; }

.PHONY: fmt
fmt:
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## go vet and gofmt check.
	$(GO) vet ./...
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }

.PHONY: test
test: ## Install what tests need (redis-server, ...), then run every test.
	hack/test.sh

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME.
	hack/fuzz.sh $(FUZZTIME)

.PHONY: bench
bench:
	$(GO) test -p 1 -run '^$$' -bench . -benchmem ./pkg/...

.PHONY: bench-kubernetes
bench-kubernetes: ## 10,000 AuthPolicies through a real API server: start to Ready, one change, idle CPU, RSS (about 6 min).
	KUBEBUILDER_ASSETS="$$(hack/envtest-tools.sh)" TOLLGATE_BENCH_POLICIES=$${TOLLGATE_BENCH_POLICIES:-10000} \
		$(GO) test ./pkg/controller -run '^$$' -bench PoliciesThroughAPIServer -benchtime 1x -timeout 60m

##@ Build

.PHONY: build
build: ## Build bin/tollgate (static, as in the image: hack/build.sh).
	VERSION=$(VERSION) COMMIT=$(COMMIT) hack/build.sh $(LOCALBIN)/tollgate

.PHONY: docker-build
docker-build: ## Build the container image IMG (Dockerfile; the binary is built by hack/build.sh).
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image IMG.
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: run
run: build ## Serve config/samples with the memory store and a development key.
	exec hack/run.sh

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

##@ Performance

.PHONY: bench-policies
bench-policies: ## 10,000 policies in files: start to Ready, one change applied, idle CPU, RSS, Check cost vs 10 (docs/policy-scale.md).
	hack/policybench.sh $(POLICYBENCH_ARGS)

.PHONY: loadtest
loadtest: ## CPU per Check, latency and RSS of tollgate vs a bare gRPC server (docs/loadtest.md).
	hack/loadtest.sh $(LOADTEST_ARGS)
