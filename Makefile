# The README's two commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint bench clean clean-numba

$(BIN)/riskmon: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/riskmon

# numba's on-disk cache is checked against each kernel's own file only, not the files whose
# constants and kernels it compiled in: a changed layout elsewhere leaves a stale (even crashing)
# kernel. Any change to the modules kernels import clears the cache once.
KERNEL_SOURCES := $(shell find schemas scoring streams/core -name '*.py')
$(VENV)/.numba-sources: $(KERNEL_SOURCES) | $(BIN)/riskmon
	find schemas scoring streams -name '*.nbi' -delete -o -name '*.nbc' -delete
	touch $@

demo: install $(VENV)/.numba-sources
	$(BIN)/riskmon demo

# Installs Debian's prometheus (integration tests start a real one) and kcat (the client test
# runs it) when missing.
test: install $(VENV)/.numba-sources
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v kcat >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus kcat >/dev/null)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected'; rc=0; fi; exit $$rc

bench: install
	$(BIN)/python benchmarks/bench_kernel.py --rows 1000000 --json benchmarks/results/kernel.json

clean: clean-numba
	rm -rf $(VENV) build *.egg-info

# clear numba's cache by hand (the next start compiles everything again)
clean-numba:
	find schemas scoring streams -name '*.nbi' -delete -o -name '*.nbc' -delete
