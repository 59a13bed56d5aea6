# certbound: build, test, package and demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := build

TARGET := wasm32-wasip1
WASM   := target/$(TARGET)/release/certbound.wasm
DIST   := dist
PY     ?= python3

# Which toolchain builds the wasm: auto (rustup's target, else Debian's packages), rustup, debian.
WASM_ROUTE ?= auto

.PHONY: help callgrind build wasm-opt build-debian test unit lint e2e compose-check dist demo demo-stop bench soak soak-smoke clean kong-validator kong-engine

# The workplace's shared/ beside the repository (CI lays a read-only copy there); its
# kong-validator/ runs Kong 3.9.3's own filter-config validation for tests/config_schema.rs.
CERTBOUND_SHARED ?= $(abspath $(CURDIR)/../shared)
export CERTBOUND_SHARED
KONG_VALIDATOR := $(CERTBOUND_SHARED)/kong-validator
# What its setup.sh apt-installs. Installed here first: setup.sh's own check for a missing
# package (apt-cache policy | grep -q under pipefail) fails at random on SIGPIPE.
KONG_VALIDATOR_PKGS := luajit2 libluajit2-5.1-dev lua-yaml lua-rex-pcre2 lua-resty-lrucache lua-penlight gcc make libc6-dev patch

help:
	@echo "make build          certbound.wasm in $(WASM) (installs the wasm32-wasip1 target itself)"
	@echo "make test           every test: unit + host-shaped + schema (cargo, Kong's validator), clippy, e2e in real Envoy and Kong's engine, compose file"
	@echo "make kong-engine    Kong's Wasm engine (nginx + ngx_wasm_module) from \$$CERTBOUND_SHARED/kong-engine, cached in $(KONG_ENGINE_DIR)"
	@echo "make unit | lint | e2e | compose-check   one part of 'make test'"
	@echo "make kong-validator Kong 3.9.3's config validation for the tests (\$$CERTBOUND_SHARED/kong-validator, default ../shared)"
	@echo "make dist           $(DIST)/ with certbound.wasm + certbound.meta.json (mount it as Kong's wasm_filters_path)"
	@echo "make oci            $(DIST)/oci + $(DIST)/certbound-oci.tar: the filter as an OCI image for Istio / Envoy Gateway, checked (deploy/)"
	@echo "make demo           IdP + Envoys + Kong's engine + upstream on 127.0.0.1, narrated stolen-token replays; 'make demo-stop' ends it"
	@echo "make bench          CPU per request and peak req/s of certbound vs Envoy's native filters (BENCH_ARGS=--quick)"
	@echo "make callgrind      instructions per request of the filter's own code (native, exact); cargo bench --bench decision: wall-clock"
	@echo "make soak           IdP faults + recovery times, a checked load run, memory over 1M distinct tokens (tests/soak/)"
	@echo "make soak-smoke     the same, short (CI): a few minutes; summary in target/soak/summary.json"
	@echo "make build-debian   the wasm from Debian's Rust packages only (the fallback route), into target/debian/"
	@echo "make fuzz           each fuzz target (fuzz/) for FUZZ_SECONDS (60) natively; 'make fuzz-smoke' 10 s each"

# --- the wasm ------------------------------------------------------------------------------
# rustup's target first; without rustup, or if it cannot download, Debian's Rust 1.85 with
# build-std. Our dependencies declare newer Rust versions for library APIs that 1.85 has
# as unstable features, so that route turns those features on for crates.io crates only.
DEBIAN_PKGS := rustc-web cargo-web rust-web-src wasi-libc lld-19
DEBIAN_FEATURES := integer_sign_cast,const_black_box,slice_as_chunks,unsigned_is_multiple_of

build:
	@set -e; route="$(WASM_ROUTE)"; \
	if [ "$$route" = auto ]; then \
	  if command -v rustup >/dev/null && { rustup target list --installed | grep -qx $(TARGET) || \
	       { echo "==> installing the Rust target $(TARGET) (rustup)"; rustup target add $(TARGET); }; }; \
	  then route=rustup; else echo "==> rustup's $(TARGET) target is not available; using Debian's Rust packages"; route=debian; fi; \
	fi; \
	if [ "$$route" = debian ]; then $(MAKE) --no-print-directory build-debian DEBIAN_OUT=target; \
	else echo "==> building $(WASM)"; cargo build --release --target $(TARGET); \
	  $(MAKE) --no-print-directory wasm-opt; fi; \
	ls -l $(WASM) | awk '{printf "==> %s: %d bytes\n", $$NF, $$5}'

# binaryen's optimiser over cargo's output (about 10% smaller and no slower), when cargo
# built a new one. Without wasm-opt the .wasm is cargo's, and works the same.
WASM_OPT_FLAGS := -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --strip-debug --strip-producers
wasm-opt:
	@set -e; built=target/$(TARGET)/release/deps/certbound.wasm; \
	if ! command -v wasm-opt >/dev/null; then \
	  echo "==> wasm-opt not found (Debian: apt install binaryen): $(WASM) is cargo's, not post-optimised"; \
	else \
	  if [ ! -e $(WASM).opt ] || [ $$built -nt $(WASM).opt ]; then \
	    echo "==> wasm-opt -O3 (binaryen $$(wasm-opt --version | awk '{print $$3}'))"; \
	    wasm-opt $(WASM_OPT_FLAGS) $$built -o $(WASM).opt.tmp && mv $(WASM).opt.tmp $(WASM).opt; \
	  fi; \
	  cp $(WASM).opt $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	fi

DEBIAN_OUT ?= target/debian
build-debian:
	@set -e; \
	missing=$$(for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:" $$missing; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi; \
	mkdir -p $(DEBIAN_OUT); \
	printf '%s\n' '#!/bin/sh' \
	  '# rustc wrapper: newer library features for crates.io crates, never for the standard library.' \
	  'rustc="$$1"; shift' \
	  'case " $$* " in *" --crate-name core "*|*" --crate-name std "*|*" --crate-name alloc "*|*"/rustlib/src/"*) exec "$$rustc" "$$@";; esac' \
	  'case " $$* " in *"index.crates.io"*) exec "$$rustc" "$$@" -Zcrate-attr="feature($(DEBIAN_FEATURES))" -Astable-features;; esac' \
	  'exec "$$rustc" "$$@"' > $(DEBIAN_OUT)/debian-rustc-wrapper.sh; \
	chmod +x $(DEBIAN_OUT)/debian-rustc-wrapper.sh; \
	echo "==> building certbound.wasm with Debian's Rust $$(/usr/bin/rustc --version | cut -d' ' -f2) and build-std into $(DEBIAN_OUT)/"; \
	PATH=/usr/lib/llvm-19/bin:$$PATH \
	RUSTC_WRAPPER=$(CURDIR)/$(DEBIAN_OUT)/debian-rustc-wrapper.sh RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
	RUSTFLAGS="-C linker=wasm-ld-19 -C link-self-contained=no -L /usr/lib/wasm32-wasi" \
	/usr/bin/cargo build --release --target $(TARGET) --target-dir $(DEBIAN_OUT) \
	  -Z build-std=std,panic_abort --ignore-rust-version --quiet

# --- tests -----------------------------------------------------------------------------------
test: unit lint build e2e compose-check
	@echo "==> all tests passed"

unit: kong-validator
	@echo "==> cargo test (pure core, host-shaped filter tests, config schema, Kong's validator)"
	cargo test --quiet

# Idempotent and cached ($$HOME/.cache/certbound/kong-validator): seconds on a rerun.
kong-validator:
	@set -e; \
	if [ ! -f "$(KONG_VALIDATOR)/setup.sh" ]; then \
	  echo "no $(KONG_VALIDATOR)/setup.sh: tests/config_schema.rs needs Kong's validator;" \
	    "put shared/ beside the repository or set CERTBOUND_SHARED to the folder holding kong-validator/" >&2; \
	  exit 1; \
	fi; \
	missing=$$(for p in $(KONG_VALIDATOR_PKGS); do \
	  [ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || echo $$p; done); \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  echo "==> installing for Kong's validator:" $$missing; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  { $$sudo apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || \
	    echo "==> apt-get failed; $(KONG_VALIDATOR)/setup.sh tries its own way"; \
	fi; \
	echo "==> Kong's validator: $(KONG_VALIDATOR)/setup.sh"; \
	bash "$(KONG_VALIDATOR)/setup.sh"

lint: build
	@echo "==> rustfmt, clippy (native and wasm), -D warnings"
	cargo fmt --check
	cargo clippy --quiet --all-targets -- -D warnings
	cargo clippy --quiet --release --target $(TARGET) -- -D warnings

# Both hosts, always: the same cases against the same IdP, in Envoy 1.40 and in Kong's Wasm
# engine (nginx + ngx_wasm_module at Kong 3.9's pin, built by kong-engine below).
e2e: build kong-engine
	@echo "==> end to end on Envoy: real Envoy 1.40 + oidc-provider + echo upstream"
	$(PY) tests/e2e/run_tests.py --host envoy --wasm $(WASM)
	@echo "==> end to end on Kong's engine: nginx 1.27.4 + ngx_wasm_module (Kong 3.9's pin) + the same IdP and upstream"
	KONG_ENGINE_DIR=$(KONG_ENGINE_DIR) $(PY) tests/e2e/run_tests.py --host kong --wasm $(WASM)
	$(PY) tests/e2e/load_examples.py --wasm $(WASM)

# Kong's Wasm engine from ../shared/kong-engine (no package has it): about 14 min the first
# time on 2 cores, cached in $(KONG_ENGINE_DIR), seconds after. No engine, no e2e: it fails.
KONG_ENGINE_DIR ?= $(HOME)/.cache/certbound/kong-engine
export KONG_ENGINE_DIR
kong-engine:
	@set -e; build="$(CERTBOUND_SHARED)/kong-engine/build.sh"; \
	if [ ! -f "$$build" ]; then \
	  echo "ERROR: no $$build: the e2e suite runs on Kong's engine too, and it is built from there;" \
	    "put shared/ beside the repository or set CERTBOUND_SHARED" >&2; exit 1; \
	fi; \
	echo "==> Kong's Wasm engine ($$build, cached in $(KONG_ENGINE_DIR))"; \
	if ! bash "$$build" "$(KONG_ENGINE_DIR)"; then \
	  echo "ERROR: Kong's engine could not be built (log: $(KONG_ENGINE_DIR)/build/build.log); the e2e suite on Kong cannot run" >&2; \
	  exit 1; \
	fi

compose-check:
	@if [ -f tests/compose/check.py ]; then echo "==> docker-compose harness"; $(PY) tests/compose/check.py; fi

# --- packaging -------------------------------------------------------------------------------
dist: build
	@mkdir -p $(DIST)
	cp $(WASM) $(DIST)/certbound.wasm
	$(PY) -c 'import json,sys; s=json.load(open("filter-config/certbound.schema.json")); json.dump({"config_schema": s}, open("$(DIST)/certbound.meta.json","w"), indent=2)'
	@echo "==> $(DIST)/ holds certbound.wasm and certbound.meta.json: point Kong's wasm_filters_path at it"

# --- OCI image for Istio and Envoy Gateway (deploy/) ----------------------------------------
# The Wasm image spec's "compat" variant (one tar+gzip layer holding plugin.wasm), written as an
# OCI image layout and as a tarball by deploy/oci.py, no container engine; named as the manifests
# in deploy/ name it. oci-check (deploy/check.py) verifies it with skopeo, the manifests against
# the filter's schema and published Kubernetes schemas, and loads it in Envoy: deploy/README.md.
OCI_REPO    ?= ghcr.io/certbound/certbound
OCI_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
OCI_IMAGE   := $(OCI_REPO):$(OCI_VERSION)
OCI_ARGS     = --image $(OCI_IMAGE) --wasm $(DIST)/certbound.wasm --layout $(DIST)/oci --archive $(DIST)/certbound-oci.tar
OCI_CHECK_FLAGS ?=

.PHONY: oci oci-check
oci: dist
	$(PY) deploy/oci.py $(OCI_ARGS) --summary $(DIST)/oci-image.json
	@$(MAKE) --no-print-directory oci-check

oci-check:
	$(PY) deploy/check.py $(OCI_ARGS) $(OCI_CHECK_FLAGS)

# --- demo and benchmark ----------------------------------------------------------------------
demo: dist kong-engine kong-validator
	$(PY) tests/e2e/demo.py

demo-stop:
	$(PY) tests/e2e/demo.py stop

# Not part of `make test`: measures, never fails on figures. BENCH_ARGS e.g. --quick, --only base,certbound_warm, --rate 1500.
bench: build
	$(PY) tests/bench/bench.py $(BENCH_ARGS)

# --- fuzzing (fuzz/README.md) ---------------------------------------------------------------
# cargo-fuzz and libFuzzer against the pure core, natively, on the stable toolchain
# (RUSTC_BOOTSTRAP=1 for the nightly flags cargo-fuzz passes). FUZZ_TARGETS picks some,
# FUZZ_SANITIZER=address adds ASan. A crash fails the run and leaves its input in fuzz/artifacts/.
FUZZ_SECONDS ?= 60
.PHONY: fuzz fuzz-smoke fuzz-seeds fuzz-build
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh run

fuzz-smoke:
	FUZZ_SECONDS=10 bash fuzz/run.sh run

fuzz-seeds:
	bash fuzz/run.sh seeds

fuzz-build:
	bash fuzz/run.sh build

# --- faults, load and memory (tests/soak/): real Envoy + IdP behind a fault-injecting proxy ---
SOAK_FLAGS ?=
soak: build
	$(PY) tests/soak/soak.py --wasm $(WASM) $(SOAK_FLAGS)

soak-smoke: build
	$(PY) tests/soak/soak.py --smoke --wasm $(WASM) $(SOAK_FLAGS)

clean:
	cargo clean
	rm -rf $(DIST)

# --- the decision's own cost, natively (benches/decision.rs) ------------------------------
callgrind:
	bash tests/bench/callgrind.sh
