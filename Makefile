# mosn-extension build entry points. `make help` lists them.
SHELL := /bin/bash
OUT := build/output
CARGO ?= cargo
RELEASE_DIR := target/release

.PHONY: help build-l7 build-nginx-module header-check install-deps test test-rust lint test-c test-hosts demo bench bench-hosts bench-instructions build-moe-image build-nginx-image clean readme-fields

help:
	@echo "make build-l7          library + header + mosn-ext + Envoy module into $(OUT)/"
	@echo "make build-nginx-module ngx_http_mosn_module.so into $(OUT)/"
	@echo "make demo [HOST=envoy|nginx] [PORT=2990] [KEEP=1]   unit-routing demo"
	@echo "make test              everything CI runs"
	@echo "make lint              fmt, clippy -D warnings, module dependency check"
	@echo "make readme-fields     regenerate README.md's configuration reference"
	@echo "make bench             criterion benchmarks: decision path, routing, balancers"
	@echo "make bench-hosts       wrk: the module vs native, floor, Lua, njs on Envoy and Nginx"
	@echo "make bench-instructions callgrind: instructions per request of the same targets"

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
test-hosts: build-l7 build-nginx-module
	python3 nginx-module/test/run-fake.py
	python3 -m pytest -q tests

# The README's test command: installs what is missing, builds, runs every suite.
test: install-deps header-check lint test-rust test-c test-hosts

demo: install-deps build-l7 build-nginx-module
	python3 scripts/demo.py --host $(or $(HOST),envoy) --port $(or $(PORT),2990) $(if $(KEEP),--keep) $(if $(EXAMPLE),--example $(EXAMPLE))

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
