# Thin recipes over cargo; CI runs `make test` through .ci/run.

CARGO     ?= cargo
WASM      := wasm32-wasip2
RELEASE   := target/$(WASM)/release
COMPONENT := $(RELEASE)/runqueue.wasm
COMPOSED  := $(RELEASE)/runqueue-sim.wasm
RUNQUEUE  := target/release/runqueue
DEMO      := examples/demo
JOBS      ?= 4

.PHONY: build component host test demo check bench fuzz wasm-target wac tools clean

## build: the component (runqueue.wasm, and runqueue-remote.wasm with the remote
##        cache over wasi:http), the simulated process provider and its composition
##        (runqueue-sim.wasm, for wasmtime run), and the host CLI; all release
build: component host

wasm-target:
	@rustup target list --installed | grep -qx $(WASM) || rustup target add $(WASM)

## Tools from crates.io, installed once when missing (versions pinned):
## wac composes components; wasm-tools and the wasmtime CLI are used by tests.
WAC_VERSION        := 0.12.0
WASM_TOOLS_VERSION := 1.263.0
WASMTIME_VERSION   := 48.0.8
wac:
	@command -v wac >/dev/null 2>&1 || $(CARGO) install wac-cli --version $(WAC_VERSION) --locked

tools: wac
	@command -v wasm-tools >/dev/null 2>&1 || $(CARGO) install wasm-tools --version $(WASM_TOOLS_VERSION) --locked
	@command -v wasmtime >/dev/null 2>&1 || $(CARGO) install wasmtime-cli --version $(WASMTIME_VERSION) --locked

component: wasm-target wac
	$(CARGO) build -p runqueue -p simprocess --target $(WASM) --release
	$(CARGO) build -p runqueue --features remote-cache --target $(WASM) --release --target-dir target/remote
	cp target/remote/$(WASM)/release/runqueue.wasm $(RELEASE)/runqueue-remote.wasm
	wac compose examples/simprocess/compose.wac -o $(COMPOSED) \
		--dep runqueue:executor=$(COMPONENT) --dep runqueue:simprocess=$(RELEASE)/simprocess.wasm

host:
	$(CARGO) build -p runqueue-host --release

## test: unit tests (native) and end-to-end tests (real component, real processes)
test: component tools
	$(CARGO) test --release --workspace

## fuzz: the graph parser and validator against random bytes, byte edits of a
##       valid graph and hostile graph-shaped JSON ($(FUZZ_CASES) cases each;
##       `make test` runs 300)
FUZZ_CASES ?= 100000
fuzz:
	RUNQUEUE_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p runqueue --lib graph_fuzz

## demo: build the bundled example (three small C "recipes" and an image) at -j$(JOBS),
##       then build it again: everything comes from the cache
demo: build
	rm -rf $(DEMO)/downloads $(DEMO)/build $(DEMO)/sysroot $(DEMO)/image $(DEMO)/.runqueue
	$(RUNQUEUE) check $(DEMO)/graph.json
	$(RUNQUEUE) build $(DEMO)/graph.json --workspace $(DEMO) -j $(JOBS) \
		--report $(DEMO)/.runqueue/report.json --trace $(DEMO)/.runqueue/trace.json --chart $(DEMO)/.runqueue/timeline.svg
	@echo "--- report, Chrome trace and timeline: $(DEMO)/.runqueue/{report.json,trace.json,timeline.svg}"
	@echo "--- what the image task printed ($(DEMO)/.runqueue/logs/image/log.do_rootfs):"
	@cat $(DEMO)/.runqueue/logs/image/log.do_rootfs
	@echo "--- the same build again, with the image deleted: nothing runs, the image is restored"
	rm -rf $(DEMO)/image
	$(RUNQUEUE) build $(DEMO)/graph.json --workspace $(DEMO) -j $(JOBS)
	$(DEMO)/image/usr/bin/hello again

## bench: benchmarks, written to target/bench-report.md (needs ../shared/data/yocto;
##        installs Ninja from PyPI when missing)
REPORT := target/bench-report.md
bench: build
	@command -v ninja >/dev/null 2>&1 || python3 -m pip install --quiet ninja
	@mkdir -p target
	@printf '# runqueue benchmarks\n\nMeasured %s on %s cores; %s; %s.\n\n' \
		"$$(date -u +%Y-%m-%dT%H:%MZ)" "$$(nproc)" "$$(ninja --version | sed 's/^/ninja /')" "$$(make --version | head -1)" > $(REPORT)
	$(CARGO) bench -p runqueue-host --bench schedule -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench cache -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench data -- $(abspath $(REPORT))
	@echo "report: $(REPORT)"

## check: formatting and lints, native and wasm
check: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings
	$(CARGO) clippy -p runqueue -p simprocess --target $(WASM) --release -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DEMO)/downloads $(DEMO)/build $(DEMO)/sysroot $(DEMO)/image $(DEMO)/.runqueue
