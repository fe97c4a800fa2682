# Set-up and everyday commands. Run as root on Debian/Ubuntu; each target installs what
# it needs first.
.PHONY: deps build run test bench mutants vmlinux schema console screenshots

CARGO ?= cargo
# Build and test tools from Debian: the BPF toolchain, bpftool (vmlinux.h), and the
# reference tools the tests compare against.
DEB_PACKAGES := clang libelf-dev zlib1g-dev libc6-dev linux-libc-dev pkg-config make bpftool python3 \
	util-linux strace bpftrace prometheus chromium docker.io busybox-static runc \
	kmod passwd python3-kubernetes python3-yaml postgresql
ARGS ?= serve

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# The machine's Node.js may come from elsewhere; Debian's only when there is none.
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
	@# playwright-core drives Debian's chromium in the console test; typescript and
	@# esbuild rebuild the console for the test that compares it with web/dist.
	@[ -d web/node_modules/playwright-core ] && [ -d web/node_modules/typescript ] || (cd web && npm ci --no-audit --no-fund)

build: deps
	$(CARGO) build --release --locked

# The main job: the server on 127.0.0.1:8527 (`make run ARGS="run process --duration 10"` for the CLI).
run: build
	./target/release/eunomia $(ARGS)

# Tests that cannot run here (not root, no Docker) are listed in target/tmp/skipped-tests;
# outside CI they skip loudly, and the run fails unless EUNOMIA_ALLOW_SKIP=1.
SKIP_LOG := target/tmp/skipped-tests

# --no-fail-fast: every test binary runs even after one fails, so one run reports every
# failure.
test: deps
	$(CARGO) check --benches --locked
	@rm -f $(SKIP_LOG)
	$(CARGO) test --locked --no-fail-fast
	@if [ -s $(SKIP_LOG) ]; then \
		echo "$$(wc -l < $(SKIP_LOG)) tests SKIPPED, they tested nothing:"; cat $(SKIP_LOG); \
		[ "$$EUNOMIA_ALLOW_SKIP" = 1 ] || { echo "run as root, or set EUNOMIA_ALLOW_SKIP=1"; exit 1; }; \
	fi

# app_overhead loads a real nginx with wrk; any nginx flavour will do.
bench: deps
	@command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(CARGO) bench --locked

# Mutation testing with cargo-mutants, not part of CI (hours for every group): each group
# of modules where a silent error costs most runs against the tests that cover it.
# Narrow it with e.g. `make mutants MUTANTS_ARGS="-f server/results/query.rs"`.
MUTANTS_QUERY := server/results/query.rs server/handler/filter.rs server/results/memory/mod.rs \
	server/results/sqlite/mod.rs
MUTANTS_PROBES := server/trackers/*/mod.rs server/engine/mod.rs
MUTANTS_ARGS ?=

mutants: deps
	@command -v cargo-mutants >/dev/null || $(CARGO) install --locked cargo-mutants
	$(CARGO) mutants --output target/mutants-query $(addprefix -f ,$(MUTANTS_QUERY)) $(MUTANTS_ARGS) \
		-- --lib --test memory --test store --test handler_chain
	$(CARGO) mutants --output target/mutants-probes $(addprefix -f ,$(MUTANTS_PROBES)) $(MUTANTS_ARGS) \
		-- --lib --test syscall_tracker --test files_tracker --test process_tracker \
		--test tcp_tracker --test ipc_tracker

# Regenerates probes/vmlinux.h from the running kernel's BTF, by hand only: CO-RE lets one
# header serve every kernel, so it is never compared with the kernel a test runs on.
vmlinux: deps
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > probes/vmlinux.h

# Regenerates schema/schema.graphql from the code (a test checks for drift).
schema:
	$(CARGO) run --quiet --locked -- schema > schema/schema.graphql

# Rebuilds the console's committed bundle in web/dist/.
console:
	cd web && ./build.sh

# Rebuilds the console screenshots the README shows: the browser test against a real
# server (root, Docker), three of its pages kept in web/screenshots/.
screenshots: deps
	dir=$$(mktemp -d) && EUNOMIA_CONSOLE_SHOTS=$$dir CI=true $(CARGO) test --locked --test server -- console_works_offline_in_a_real_browser && \
		cp $$dir/chart-operator.png $$dir/flamegraph-operator.png $$dir/alerts-viewer.png web/screenshots/ && rm -rf $$dir
