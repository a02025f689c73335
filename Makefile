# Set-up and everyday commands. `make demo` is the main job on the embedded default; `make test` runs the suite.
# TORCH_SPEC picks the torch build: the default is the CPU wheel this project is tested with. GPU users:
# install their CUDA build of torch into $(VENV) first (or pass TORCH_SPEC), the set-up then keeps it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -ra

demo: setup
	$(VENV)/bin/medgan-translate demo --out demo_output

bench: setup
	$(PY) benchmarks/run_benchmark.py --variants fully_convolutional=false

clean:
	rm -rf $(VENV) demo_output .pytest_cache
