# Set-up and everyday commands. Run as root on Debian/Ubuntu; each target installs what
# it needs first.
.PHONY: deps build run test bench vmlinux

CARGO ?= cargo
# Build and test tools from Debian: the BPF toolchain, bpftool (vmlinux.h), and the
# reference tools the tests compare against.
DEB_PACKAGES := clang libelf-dev zlib1g-dev pkg-config make bpftool python3 util-linux
ARGS ?= run process

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --release --locked

# The main job: `make run ARGS="run process --duration 10 --format json"`.
run: build
	./target/release/eunomia $(ARGS)

test: deps
	$(CARGO) check --benches --locked
	$(CARGO) test --locked

bench: deps
	$(CARGO) bench --locked

# Regenerates probes/vmlinux.h from the running kernel's BTF (a test checks for drift).
vmlinux: deps
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > probes/vmlinux.h
