# Two commands for a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded synthetic checkpoint
#   make test   set up .venv and run the test suite
PY ?= $(shell command -v python3.12 || echo python3)
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= test

.PHONY: setup demo test clean

$(VENV)/.installed-$(EXTRAS): setup.py
	@echo "installing gptoss-jax and its dependencies into $(VENV) (once; 1-3 minutes)"
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# BFCL's own checker; --no-deps because bfcl-eval pins numpy 1.26 while jax 0.11 needs numpy >= 2.1
	$(PIP) install -q --no-deps "bfcl-eval==2026.3.23"
	touch $@
	@echo "installed: \`source $(VENV)/bin/activate\` puts the gptoss command on your PATH (the README's commands assume it)"

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(VENV)/bin/gptoss demo
	@echo "next: \`source $(VENV)/bin/activate\`, then the README's commands (gptoss chat, gptoss eval, ...)"

test: setup
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
