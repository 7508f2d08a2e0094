# Two entry points for a fresh machine: `make repro` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PIP_VERSION := 26.3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install browser repro retrain test lint bench ui clean-venv

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

# The browser tests (tests/ui) drive Debian's Chromium. Install it when missing (with apt-get,
# as root or through password-less sudo), else stop with one line saying how: with
# GENREFLOW_REQUIRE_BROWSER=1 a missing browser fails those tests, so `make test` never passes
# by skipping them.
BROWSER_HINT := as root: apt-get update && apt-get install -y chromium

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  if command -v apt-get >/dev/null 2>&1 && $$SUDO true 2>/dev/null; then \
	    echo "installing chromium for the browser tests (apt-get)"; \
	    $$SUDO apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null || \
	    { echo "make: installing chromium failed; $(BROWSER_HINT)" >&2; exit 1; }; \
	  else \
	    echo "make: the browser tests need chromium; $(BROWSER_HINT)" >&2; exit 1; \
	  fi; }

test: $(STAMP) browser
	$(BIN)/ruff check src stages tests bench
	GENREFLOW_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src stages tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_spectrogramize.py

ui: $(STAMP)
	$(BIN)/genreflow ui

clean-venv:
	rm -rf $(VENV)
