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

demo: install
	$(BIN)/riskmon demo

# Installs Debian's prometheus (integration tests start a real one) and kcat (the client test
# runs it) when missing.
test: install
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

# numba's on-disk cache is per file and does not follow calls into other files: after changing a
# kernel that another module's kernel calls, clear it (the next start compiles everything again)
clean-numba:
	find schemas scoring streams -name '*.nbi' -delete -o -name '*.nbc' -delete
