# kpo-reaper. `make demo` shows the reaper working; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Version=$(VERSION) -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Commit=$(COMMIT)
BIN := bin/kpo-reaper

.PHONY: all build test test-unit test-e2e e2e-bins demo bench lint generate clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kpo-reaper

# Unit tests (race detector on), then the end-to-end suite against a real
# kube-apiserver + etcd and the Airflow simulator.
test: lint test-unit test-e2e

test-unit:
	$(GO) test -race -count=1 ./...

# The e2e module needs kube-apiserver and etcd built from the Go module proxy
# (15-18 minutes cold on 2 cores, reused afterwards) and the reaper binary.
test-e2e: build e2e-bins
	cd e2e && KPO_REAPER_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 40m ./...

e2e-bins:
	./e2e/tools/build.sh

demo: build e2e-bins
	cd e2e && $(GO) run ./cmd/demo --reaper $(CURDIR)/$(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# Issue 10's scale benchmarks against kube-apiserver + etcd and the Airflow
# simulator (not part of make test; about 25 minutes with today's reaper):
# one evaluation (plan) of 2,000 KPO pods next to 20,000 unfinished task
# instances on Airflow 2.10.5, 3.2.1 and 3.3.0, quiet and busy, and the
# daemon's footprint at 2,000 and 10,000 pods. KPO_REAPER_BIN=/path measures
# another binary; without it bin/kpo-reaper is built and measured.
.PHONY: bench-scale
bench-scale: e2e-bins
	$(if $(KPO_REAPER_BIN),,$(MAKE) build)
	cd e2e && KPO_REAPER_BIN=$(or $(KPO_REAPER_BIN),$(CURDIR)/$(BIN)) $(GO) test -run '^$$' \
	  -bench 'BenchmarkScalePlan|BenchmarkIdleWith(2000|10000)Pods' -benchtime 1x -timeout 120m ./production/

lint:
	@out="$$(gofmt -l cmd internal e2e 2>/dev/null)"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...

# Regenerates the Airflow 3 (API v2) client from the committed spec.
generate:
	$(GO) generate ./internal/airflow/...

clean:
	rm -rf bin
