# The two entry points README.md names. Both create .venv themselves, so they work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup check test lint bench clean compiled rumur conformance-setup conformance fuzz hugepages patched-module conformance-patched

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $(STAMP)

setup: $(STAMP)

# Main job: every model check and proof, with a summary table.
check: $(STAMP)
	$(BIN)/devdax all

# The spec and explorer compiled by mypyc into build/compiled (devdax/compiled.py), for
# `devdax check --compiled`; tests/model/test_compiled.py compares it with the interpreted spec.
compiled: $(STAMP)
	$(BIN)/python -m devdax.compiled build

# Tests: unit, invariant, variant, refinement, lint and types. In TEST_WORKERS processes
# (pytest-xdist): 462 s with two on this 2-core machine against about 800 s in one; `make test
# TEST_WORKERS=0` runs them in this process. Huge pages first: without the pool, the 2M tests of
# two workers compete for the few pages tests/impl/test_huge_pages.py raises by itself.
TEST_WORKERS ?= 2
test: $(STAMP) hugepages
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

# Huge pages for impl's 2M and 1G devices (impl/core.py: hugetlbfs memory, real PMD/PUD entries).
# Raises each pool to the count asked (never lowers one, so it is harmless when already reserved);
# without root, or where the kernel cannot find the memory, it says so and impl uses 4K pages.
HUGEPAGES_2M ?= 64
HUGEPAGES_1G ?= 1
hugepages:
	@for want in 2048kB:$(HUGEPAGES_2M) 1048576kB:$(HUGEPAGES_1G); do \
	  size=$${want%%:*}; n=$${want##*:}; d=/sys/kernel/mm/hugepages/hugepages-$$size; \
	  if [ ! -d $$d ]; then echo "hugepages: this kernel has no $$size pages"; continue; fi; \
	  [ "$$(cat $$d/nr_hugepages)" -ge "$$n" ] || { echo "$$n" > $$d/nr_hugepages; } 2>/dev/null || true; \
	  have=$$(cat $$d/nr_hugepages); short=""; [ "$$have" -ge "$$n" ] || short=": not root, or no memory"; \
	  echo "hugepages: $$size: $$have reserved, $$(cat $$d/free_hugepages) free ($$n asked$$short)"; \
	done

# What `devdax conformance` boots with: QEMU, busybox for the guest's init, ndctl to carve devices.
conformance-setup:
	@command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null && command -v ndctl >/dev/null \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	       qemu-system-x86 busybox-static ndctl; }

# Rumur, the Murphi model checker bench/bench_rumur.py and tests/bench race devdax against (issue 15)
rumur:
	@command -v rumur >/dev/null \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rumur; }

# Real kernels as the oracle: the scenario suite on Linux under QEMU (KERNEL=6.1|6.12|7.2|all).
KERNEL ?= 6.1
conformance: $(STAMP) conformance-setup
	$(BIN)/devdax conformance --kernel $(KERNEL)

# The fixes of docs/findings.md as a module: device_dax.ko of KERNEL with docs/findings/*.patch,
# built out of tree against Debian's headers of that kernel (devdax/conformance/module.py), then the
# findings' scenarios on that kernel with it (recorded under tests/kernel-results/patched/).
PATCHED_KO ?= build/device_dax-$(KERNEL)-fixes.ko
FINDINGS_SCENARIOS := $(wildcard tests/scenarios/f[123]_*.json) tests/scenarios/s31c_touch_after_disable_4k.json \
	tests/scenarios/s33a_reenable_old_mapping.json
patched-module: $(STAMP)
	@command -v gcc >/dev/null && command -v patch >/dev/null \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	       gcc patch; }
	$(BIN)/python -m devdax.conformance.module --kernel $(KERNEL) --out $(PATCHED_KO) docs/findings/*.patch

conformance-patched: patched-module conformance-setup
	$(BIN)/devdax conformance --kernel $(KERNEL) --module $(PATCHED_KO) \
	  --profile docs/findings/fix-all-$(KERNEL).toml $(FINDINGS_SCENARIOS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The checker's speed (issue 15): every target measured and judged in one run (bench_targets),
# then each in depth: against a395383 with the compiled form beside it, the CPython floor, Rumur on
# the same race, the partitioned frontier; each rewrites its section of bench/RESULTS.md. The
# other benchmarks run one by one (bench/bench_*.py --help).
bench: $(STAMP) rumur
	$(BIN)/python -m bench.bench_targets
	$(BIN)/python bench/bench_check.py --speed
	$(BIN)/python bench/bench_floor.py
	$(BIN)/python -m bench.bench_rumur
	$(BIN)/python bench/bench_parallel.py

# The long fuzz run (issue 14): 10^5 API calls and 2,000 command lines, counts by outcome; then the
# stress benchmark of touches racing disable/enable/remove. tests/fuzz has the short run of the fuzz.
fuzz: $(STAMP)
	$(BIN)/python -m bench.bench_fuzz
	$(BIN)/python -m bench.bench_stress

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
