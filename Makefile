# Two commands do all the set-up:  `make bench` (default benchmark) and `make test` (test suite).
# Both create .venv and install diqa-bench with its in-tree plugins on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The LIVE parameter files for BRISQUE and NIQE, where this checkout has them beside it.
SHARED_WEIGHTS := $(abspath ../shared/weights)
export DIQA_BENCH_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)/*),$(SHARED_WEIGHTS),)

.PHONY: install bench test clean

$(VENV)/.installed: pyproject.toml plugins/example-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,ray]' -e plugins/example-plugin
	touch $@

install: $(VENV)/.installed

bench: install
	$(BIN)/diqa-bench run benchmarks/cross_domain.yaml

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/cross_domain
