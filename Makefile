# mosn-extension build entry points. `make help` lists them.
SHELL := /bin/bash
OUT := build/output
CARGO ?= cargo
RELEASE_DIR := target/release

.PHONY: asan deb fuzz fuzz-cmin soak help build-l7 build-nginx-module header-check install-deps test test-rust lint test-c test-hosts demo bench bench-hosts bench-instructions build-moe-image build-nginx-image clean readme-fields

help:
	@echo "make build-l7          library + header + mosn-ext + Envoy module into $(OUT)/"
	@echo "make build-nginx-module ngx_http_mosn_module.so into $(OUT)/"
	@echo "make demo [HOST=envoy|nginx] [PORT=2990] [KEEP=1]   unit-routing demo"
	@echo "make test              everything CI runs"
	@echo "make lint              fmt, clippy -D warnings, module dependency check"
	@echo "make readme-fields     regenerate README.md's configuration reference"
	@echo "make deb               the Nginx side as a Debian package (libnginx-mod-http-mosn)"
	@echo "make asan              the shared suite on nginx with ASan/LSan builds of module and library"
	@echo "make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS=...]   cargo-fuzz each target in turn (nightly)"
	@echo "make bench             criterion benchmarks: decision path, routing, balancers"
	@echo "make bench-hosts       wrk: the module vs native, floor, Lua, njs on Envoy and Nginx"
	@echo "make bench-instructions [REPEAT=3] callgrind: instructions per request of the same targets"
	@echo "make soak [SOAK_SECONDS=180] [SOAK_DOCS=1]   both hosts under load and chaos (docs/reliability.md)"

build-l7:
	$(CARGO) build --release --workspace --bins --lib
	@mkdir -p $(OUT)
	@# install replaces files (new inode), so a running host keeps its mapped copy.
	install -m 755 $(RELEASE_DIR)/libmosn_extension_ffi.so $(OUT)/mosn_extension.so
	install -m 644 $$(ls -t $(RELEASE_DIR)/build/mosn-extension-ffi-*/out/mosn_extension.h | head -1) $(OUT)/mosn_extension.h
	install -m 755 $(RELEASE_DIR)/libmosn_envoy.so $(OUT)/libmosn_envoy.so
	install -m 755 $(RELEASE_DIR)/mosn-ext $(OUT)/mosn-ext
	@echo "built: $$(ls $(OUT) | tr '\n' ' ')"

# The generated header must equal the checked-in one (the ABI is reviewed in git).
header-check: build-l7
	@cmp -s $(OUT)/mosn_extension.h include/mosn_extension.h || { \
	  echo "include/mosn_extension.h differs from the generated header:"; \
	  diff -u include/mosn_extension.h $(OUT)/mosn_extension.h | head -40; \
	  echo "run: cp $(OUT)/mosn_extension.h include/ (and review the ABI change)"; exit 1; }
	@echo "header-check: include/mosn_extension.h is up to date"

build-nginx-module: build-l7
	bash nginx-module/build.sh

install-deps:
	bash scripts/install-deps.sh

test-rust:
	$(CARGO) test --release --workspace
	@# The cross-thread wake handshake under every interleaving loom explores (src/wake.rs).
	RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom wake::loom_tests
	@# The lock-free limits and token bucket on shared words (src/upstream/word.rs).
	RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom upstream::word::loom_tests

# Lints that keep the code in shape (see README: Code layout): formatting, clippy with
# warnings as errors (unsafe_op_in_unsafe_fn and undocumented unsafe blocks are denied in
# Cargo.toml), and no import cycle between the core's top-level modules.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	python3 scripts/module-deps.py --check

# Rewrites README.md's configuration reference from the field table (src/config/fields.rs).
readme-fields: build-l7
	python3 scripts/readme-fields.py $(OUT)/mosn-ext README.md

test-c: build-l7
	bash tests/c-host/run.sh

# The nginx adapter against a scripted library (paths the core does not reach yet: body
# buffering, reply headers, response mutations), then the shared HTTP cases on both hosts.
test-hosts: build-l7 build-nginx-module deb
	python3 nginx-module/test/run-fake.py
	python3 -m pytest -q tests
	python3 scripts/soak.py --seconds 20

# The README's test command: installs what is missing, builds, runs every suite.
test: install-deps header-check lint test-rust test-c test-hosts asan

demo: install-deps build-l7 build-nginx-module
	python3 scripts/demo.py --host $(or $(HOST),envoy) --port $(or $(PORT),2990) $(if $(KEEP),--keep) $(if $(EXAMPLE),--example $(EXAMPLE))

# The Nginx side as a Debian package (build/output/libnginx-mod-http-mosn_<version>_<arch>.deb).
deb: build-nginx-module
	bash scripts/deb.sh

# AddressSanitizer + LeakSanitizer: the library and the nginx module built with ASan, the
# shared suite on nginx (docs/reliability.md has the last result).
asan: install-deps build-l7
	bash scripts/asan.sh

# Both hosts under wrk with a request mix while a chaos loop kills backends, reloads nginx and
# abandons clients; fails on a crash, a wrong answer, a socket error, RSS growth or a leaked
# stream (scripts/soak.py). SOAK_DOCS=1 writes the results into docs/reliability.md.
SOAK_SECONDS ?= 180
soak: build-l7 build-nginx-module
	SOAK_COMMAND="make soak SOAK_SECONDS=$(SOAK_SECONDS)" python3 scripts/soak.py --seconds $(SOAK_SECONDS) $(if $(SOAK_DOCS),--docs docs/reliability.md)

bench:
	$(CARGO) bench --bench decision
	$(CARGO) bench --bench routing
	$(CARGO) bench --bench balancers
	$(CARGO) bench --bench chain

bench-hosts: install-deps build-l7 build-nginx-module
	bash scripts/bench-hosts.sh

bench-instructions: install-deps build-l7 build-nginx-module
	bash scripts/bench-instructions.sh

build-moe-image: build-l7
	docker build -f docker/envoy/Dockerfile -t mosn-extension-envoy .

build-nginx-image: build-l7 build-nginx-module
	docker build -f docker/nginx/Dockerfile -t mosn-extension-nginx .

clean:
	$(CARGO) clean
	rm -rf build/output build/nginx-module build/test-runs

# Coverage-guided fuzzing (nightly + cargo-fuzz): each target for FUZZ_SECONDS, one after
# another, one process at a time; prints executions and coverage per target. `make test`
# replays the checked-in corpora on stable (ffi/tests/fuzz_replay*.rs). See docs/reliability.md.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= config config_mutate path router headers abi
fuzz:
	@failed=0; for t in $(FUZZ_TARGETS); do bash scripts/fuzz.sh $$t $(FUZZ_SECONDS) || failed=1; done; exit $$failed

# Merges what the runs found (build/fuzz/corpus) into the checked-in corpora, minimized
# and capped at FUZZ_CORPUS_MAX files per target.
FUZZ_CORPUS_MAX ?= 300
fuzz-cmin:
	@for t in $(FUZZ_TARGETS); do bash scripts/fuzz-cmin.sh $$t $(FUZZ_CORPUS_MAX) || exit 1; done
