# The two set-up commands of the README: `make app` and `make test`. Both create the virtual
# environment when it is missing and install what is missing, offline-safe; `make test` also installs chromium
# for the browser tests (.ci/install-system: apt-get as root or with sudo, else it prints the command).
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 7860
# Where pip looks for torch. Empty: the configured indexes; from the public PyPI, torch on x86_64 Linux is the
# CUDA build with its NVIDIA libraries (several GB). For the CPU-only wheel, on the first install:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: app test lint docs

$(VENV)/.installed: requirements.txt pyproject.toml
	.ci/install-system python3-venv
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

app: $(VENV)/.installed
	$(PY) app.py --port $(PORT)

test: $(VENV)/.installed
	.ci/install-system chromium
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

docs: $(VENV)/.installed
	$(PY) -m flowopd_studio.cli_reference > docs/cli.md
