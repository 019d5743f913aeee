# Two commands do all the set-up:  `make bench` (default benchmark) and `make test` (test suite).
# Both create .venv and install diqa-bench with its in-tree plugins on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The LIVE parameter files for BRISQUE and NIQE, where this checkout has them beside it.
SHARED_WEIGHTS := $(abspath ../shared/weights)
export DIQA_BENCH_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)/*),$(SHARED_WEIGHTS),)

.PHONY: install bench sentinel test clean

$(VENV)/.installed: pyproject.toml plugins/example-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,ray]' -e plugins/example-plugin
	touch $@

install: $(VENV)/.installed

bench: install
	$(BIN)/diqa-bench run benchmarks/cross_domain.yaml

# The real-judgement sentinel: the default benchmark's models (cache hits after `make bench`) and
# zero-shot methods on real dermoscopy artefact pairs (../shared/data); its table goes to
# results/ARTEFACT_PAIRS.md (numbers only: the images are CC BY-NC and never leave ../shared).
sentinel: install
	$(BIN)/diqa-bench run benchmarks/artefact_pairs.yaml; rc=$$?; \
	  if [ -s results/artefact_pairs/LEADERBOARD.md ]; then cp results/artefact_pairs/LEADERBOARD.md results/ARTEFACT_PAIRS.md; fi; \
	  exit $$rc

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/cross_domain results/artefact_pairs
