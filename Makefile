# Two entry points for a fresh machine: `make repro` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PIP_VERSION := 26.3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install repro retrain test lint bench ui clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

# Pull, reproduce, write reports/retrain.md, push (all in `genreflow retrain`). Its exit code is
# 0 = new champion, 3 = no new champion, 1 = a step failed; make reports any non-zero one as 2,
# so a caller that needs them runs $(BIN)/genreflow retrain itself after `make install`.
# Options: make retrain RETRAIN_ARGS="--set train_cnn.lr=0.02"; base revision: RETRAIN_BASE=REV.
retrain: $(STAMP)
	$(BIN)/genreflow retrain $(RETRAIN_ARGS)

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
