# Two entry points for a fresh machine: `make repro` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PIP_VERSION := 26.3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install repro test lint bench ui clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/ruff check src stages tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src stages tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_spectrogramize.py

ui: $(STAMP)
	$(BIN)/genreflow ui

clean-venv:
	rm -rf $(VENV)
