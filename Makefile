# The two entry points README.md names. Both create .venv themselves, so they work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup check test lint bench clean conformance-setup conformance fuzz

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Main job: every model check and proof, with a summary table.
check: $(STAMP)
	$(BIN)/devdax all

# Tests: unit, invariant, variant, refinement, lint and types.
test: $(STAMP)
	$(BIN)/pytest

# What `devdax conformance` boots with: QEMU, busybox for the guest's init, ndctl to carve devices.
conformance-setup:
	@command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null && command -v ndctl >/dev/null \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	       qemu-system-x86 busybox-static ndctl; }

# Real kernels as the oracle: the scenario suite on Linux under QEMU (KERNEL=6.1|6.12|7.2|all).
KERNEL ?= 6.1
conformance: $(STAMP) conformance-setup
	$(BIN)/devdax conformance --kernel $(KERNEL)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# The long fuzz run (issue 14): 10^5 API calls and 2,000 command lines, counts by outcome; then the
# stress benchmark of touches racing disable/enable/remove. tests/fuzz has the short run of the fuzz.
fuzz: $(STAMP)
	$(BIN)/python -m bench.bench_fuzz
	$(BIN)/python -m bench.bench_stress

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
