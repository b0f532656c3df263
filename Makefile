# Two entry points for people: `make demo` (the main job, offline) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench results remeasure clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned exactly here (not in pyproject) so pip takes the CPU wheel on local disk
# instead of pulling a multi-GB CUDA build; users on GPUs install their own torch first.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intentkit quickstart --out demo-output --force

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

# The page tests need a real browser: scripts/ensure-browser.sh finds or installs one, or stops
# in one line saying what to run.
test: lint
	PY=$(BIN)/python scripts/ensure-browser.sh
	$(BIN)/pytest

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# bench/RESULTS.md is generated from bench/RESULTS.template.md + bench/results/**/*.json.
results:
	$(PY) bench/results_md.py

# Issue #13's corrected predictor + serving comparisons (~10 min; needs a quiet machine).
remeasure: $(STAMP)
	PY=$(BIN)/python bench/remeasure.sh

clean:
	rm -rf $(VENV) demo-output
