# Two commands for a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded synthetic checkpoint
#   make test   set up .venv and run the test suite
PY ?= $(shell command -v python3.12 || echo python3)
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= test

.PHONY: setup demo test clean

$(VENV)/.installed-$(EXTRAS): setup.py
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# BFCL's own checker; --no-deps because bfcl-eval pins numpy 1.26 while jax 0.11 needs numpy >= 2.1
	$(PIP) install -q --no-deps "bfcl-eval==2026.3.23"
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(VENV)/bin/gptoss demo

test: setup
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
