# Two entry points on a fresh machine: `make demo` and `make test`.
# VENV may point at any folder (CI reuses one between runs); TORCH_SPEC picks the PyTorch build.
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 TRANSFORMERS_OFFLINE=1
DEMO_OUT ?= demo_output

.PHONY: setup test demo lint gallery

setup: $(VENV)/.medfm-installed

$(VENV)/.medfm-installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: setup
	$(OFFLINE) $(PY) -m pytest -q -n 2 tests

demo: setup
	$(OFFLINE) $(VENV)/bin/medfm-robust demo --out $(DEMO_OUT)

lint: setup
	$(VENV)/bin/ruff check medfm_hf metrics tests benchmarks dataset_scripts
