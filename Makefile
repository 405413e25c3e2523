# Set-up and the project's commands. `make sweep` and `make test` each do all the set-up on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
BUDGET ?= 64

.PHONY: venv install data sweep test bench lint clean
venv: $(BIN)/python
$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Debian's Fashion-MNIST package (the embedded default data), then gunzip into data/FashionMNIST/raw/
data: install
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
	  { command -v apt-get >/dev/null && (apt-get install -y -qq dataset-fashion-mnist || \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); }
	$(BIN)/python -c "from iakd_core.data import prepare_fashion_mnist; from pathlib import Path; print('data ready:', prepare_fashion_mnist(Path('$(DATA)')))"

sweep: data
	$(BIN)/python study/run_sweep.py --budget $(BUDGET)

test: data
	$(BIN)/python -m pytest -q -n 2 --dist loadfile  # two workers, a test file each at a time (tests/conftest.py)

bench: data
	$(BIN)/python bench/bench_step.py

lint: install  # (tests/test_code_health.py runs the same two, so `make test` and CI do too)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache
