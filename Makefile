# Two commands for a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded synthetic checkpoint
#   make test   set up .venv and run the test suite
PY ?= $(shell command -v python3.12 || echo python3)
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= test

TRITON_VENV ?= .venv-triton
TRITON_VERSION ?= 3.9.0

.PHONY: setup demo test clean triton-offline

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

# Offline sm_90 compile of the GPU kernels (benchmarks/triton_offline.py), no GPU needed: a separate venv with a pip
# Triton, whose wheel ships ptxas, cuobjdump and nvdisasm (about 0.3 GB; kept apart from .venv, which CI installs)
$(TRITON_VENV)/.installed-$(TRITON_VERSION):
	$(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q "triton==$(TRITON_VERSION)"
	touch $@

triton-offline: $(TRITON_VENV)/.installed-$(TRITON_VERSION)

clean:
	rm -rf $(VENV) $(TRITON_VENV) build *.egg-info
