# kpo-reaper. `make demo` shows the reaper working; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
# The version is the chart's appVersion (a test keeps the chart, the manifests
# and the image in step), "-dirty" when tracked files have changes. The commit
# id has a fixed length, so that every clone stamps the same bytes.
VERSION ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' deploy/helm/kpo-reaper/Chart.yaml)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Version=$(VERSION) -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Commit=$(COMMIT)
BIN := bin/kpo-reaper

.PHONY: all build check test test-unit test-e2e e2e-bins demo bench lint generate clean
.PHONY: image image-push test-image release release-push test-release wheel test-wheel

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kpo-reaper

# The loop of work: lint, then the main module's unit tests with the race
# detector (a few minutes warm).
check: lint test-unit

# Everything (the README's and CI's command): lint, the unit tests, the
# end-to-end suite against a real kube-apiserver + etcd and the Airflow
# simulator, the image's and the wheels' tests.
test: lint test-unit test-e2e test-image test-wheel

test-unit:
	$(GO) test -race -count=1 ./...

# The e2e module needs kube-apiserver and etcd built from the Go module proxy
# (15-18 minutes cold on 2 cores, reused afterwards) and the reaper binary.
test-e2e: build e2e-bins
	cd e2e && KPO_REAPER_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 40m ./...

e2e-bins:
	./tools/e2e-bins/build.sh

# The container image, with Go alone (no Docker engine, no base image): a
# static binary per platform, alone in one layer, in one OCI index, written to
# bin/image/oci (an OCI image layout) and bin/kpo-reaper-image.tar (the same,
# one oci-archive). Times come from the commit, so the same commit and Go
# toolchain give the same digest.
IMAGE_PLATFORMS := linux/amd64 linux/arm64
IMAGE_SOURCE := https://github.com/kpo-reaper/kpo-reaper
IMAGE_REPO ?= $(REGISTRY)/kpo-reaper
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

image:
	@set -e; for p in $(IMAGE_PLATFORMS); do \
	  echo "building $$p"; \
	  CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} GOAMD64=v1 GOARM64=v8.0 $(GO) build -trimpath -buildvcs=false \
	    -ldflags '$(LDFLAGS)' -o bin/image/$${p/\//-}/kpo-reaper ./cmd/kpo-reaper; \
	done
	cd tools/release && $(GO) run . image -out $(CURDIR)/bin/image/oci -archive $(CURDIR)/bin/kpo-reaper-image.tar \
	  $(foreach p,$(IMAGE_PLATFORMS),-platform $(p)=$(CURDIR)/bin/image/$(subst /,-,$(p))/kpo-reaper) \
	  -version '$(VERSION)' -revision '$(REVISION)' -created '$(SOURCE_DATE_EPOCH)' -source '$(IMAGE_SOURCE)'

# Pushes bin/image/oci as $(IMAGE_REPO):$(VERSION), with the credentials of
# ~/.docker/config.json (docker login, podman login, credential helpers).
image-push:
	@if [ -z "$(REGISTRY)" ] && [ "$(origin IMAGE_REPO)" = file ]; then \
	  echo "usage: make image-push REGISTRY=ghcr.io/kpo-reaper (or IMAGE_REPO=host/path/name)"; exit 2; fi
	$(MAKE) image
	cd tools/release && $(GO) run . image-push -layout $(CURDIR)/bin/image/oci -ref '$(IMAGE_REPO):$(VERSION)'

# The release, in one folder ($(RELEASE_DIR)): each platform's binary and its
# CycloneDX SBOM (read from the binary's build info), the image as one
# oci-archive, the Helm chart packaged (.tgz, appVersion = the image's
# version) and SHA256SUMS. Every timestamp is the commit's, so the same
# commit and Go toolchain give the same checksums.
RELEASE_DIR ?= bin/release
CHART_DIR := deploy/helm/kpo-reaper
CHART_REPO ?= $(REGISTRY)/charts

release: image
	cd tools/release && $(GO) run . release -out $(abspath $(RELEASE_DIR)) -layout $(CURDIR)/bin/image/oci \
	  $(foreach p,$(IMAGE_PLATFORMS),-platform $(p)=$(CURDIR)/bin/image/$(subst /,-,$(p))/kpo-reaper) \
	  -chart $(CURDIR)/$(CHART_DIR) -created '$(SOURCE_DATE_EPOCH)'

# Pushes the release's image as $(IMAGE_REPO):$(VERSION) and its chart as
# $(CHART_REPO)/kpo-reaper:<chart version> (helm install oci://...), with the
# credentials of helm registry login or docker login. Refuses a -dirty build.
release-push:
	@if [ -z "$(REGISTRY)" ] && { [ "$(origin IMAGE_REPO)" = file ] || [ "$(origin CHART_REPO)" = file ]; }; then \
	  echo "usage: make release-push REGISTRY=ghcr.io/kpo-reaper (or IMAGE_REPO=host/path/name CHART_REPO=host/path)"; exit 2; fi
	$(MAKE) release
	cd tools/release && $(GO) run . release-push -dir $(abspath $(RELEASE_DIR)) -image '$(IMAGE_REPO)' \
	  -chart-repo '$(CHART_REPO)' -created '$(SOURCE_DATE_EPOCH)'

# Builds the image and the release and checks them: platforms, config, the
# layer's one file, the binary's version, a rebuild's digest; the release's
# checksums, SBOMs and chart, a second build's identical checksums, and a
# push of image and chart to an in-process registry, pulled back.
test-image: test-release

test-release: release
	cd tools/release && $(GO) vet ./... && KPO_REAPER_IMAGE=$(CURDIR)/bin/image/oci \
	  KPO_REAPER_RELEASE=$(abspath $(RELEASE_DIR)) $(GO) test -count=1 -timeout 30m ./...

# kpo-reaper-airflow's platform wheels (the binary inside, linux x86_64 and
# aarch64), with Go and the Python standard library: bin/wheel/*.whl. Times
# come from the commit, so the same commit and toolchain give the same bytes.
wheel:
	@set -e; for a in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a GOAMD64=v1 GOARM64=v8.0 $(GO) build -trimpath -buildvcs=false \
	    -ldflags '$(LDFLAGS)' -o bin/wheel/linux-$$a/kpo-reaper ./cmd/kpo-reaper; \
	done
	rm -f bin/wheel/*.whl
	python3 python/build_wheel.py --out bin/wheel --version '$(VERSION)' --source-date-epoch '$(SOURCE_DATE_EPOCH)' \
	  --binary x86_64=bin/wheel/linux-amd64/kpo-reaper --binary aarch64=bin/wheel/linux-arm64/kpo-reaper

# The wheels' metadata, tags, binary and a pip --no-index install into a
# fresh venv, and the operator's core (e2e/airflow_task_e2e_test.go runs it
# against kube-apiserver and the simulator in test-e2e).
test-wheel: wheel
	KPO_REAPER_WHEEL_DIR=$(CURDIR)/bin/wheel python3 -m unittest discover -s python/tests -t python -v

demo: build e2e-bins
	cd e2e && $(GO) run ./cmd/demo --reaper $(CURDIR)/$(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# The scale benchmarks against kube-apiserver + etcd and the Airflow
# simulator (not part of make test; on 2 cores 6 minutes with the reaper that
# listed every unfinished task instance, 2.5 with exact lookups, plus e2e-bins
# when cold):
# one evaluation (plan) of 2,000 KPO pods next to 20,000 unfinished task
# instances on Airflow 2.10.5, 3.2.1 and 3.3.0, quiet and busy, and the
# daemon's footprint at 2,000 and 10,000 pods. KPO_REAPER_BIN=/path measures
# another binary; without it bin/kpo-reaper is built and measured.
.PHONY: bench-scale
bench-scale: e2e-bins
	$(if $(KPO_REAPER_BIN),,$(MAKE) build)
	cd e2e && KPO_REAPER_BIN=$(or $(KPO_REAPER_BIN),$(CURDIR)/$(BIN)) $(GO) test -run '^$$' \
	  -bench 'BenchmarkScalePlan|BenchmarkIdleWith(2000|10000)Pods' -benchtime 1x -timeout 120m ./production/

# golangci-lint (.golangci.yml: vet, staticcheck, revive, ... and gofmt, gci)
# on every module but two: tools/lint only pins golangci-lint itself, and
# tools/e2e-bins is two main.go wrappers of kube-apiserver and etcd whose type
# check compiles all of k8s.io/kubernetes (over 10 minutes on 2 cores).
# go tool builds golangci-lint once into the build cache.
LINT_MODULES = $(filter-out tools/lint/ tools/e2e-bins/,$(dir $(shell git ls-files -- go.mod '*/go.mod')))
GOLANGCI_LINT = $(shell cd tools/lint && $(GO) tool -n golangci-lint)

lint:
	@lint='$(GOLANGCI_LINT)'; [ -n "$$lint" ] || { echo "cannot build golangci-lint (tools/lint)"; exit 1; }; \
	  rc=0; for m in $(LINT_MODULES); do \
	    echo "golangci-lint: $$m"; (cd $$m && "$$lint" run ./...) || rc=1; \
	  done; exit $$rc

# Regenerates the Airflow 3 (API v2) client from the committed spec.
generate:
	$(GO) generate ./internal/airflow/...

clean:
	rm -rf bin

# Regenerates the chart README's values table from values.yaml's "# --"
# comments (a test fails when it is stale).
.PHONY: chart-readme
chart-readme:
	cd e2e && $(GO) run ./chart/cmd/chart-readme
