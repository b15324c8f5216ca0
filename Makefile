# lmscale: two commands do all the set-up.
#   make demo   the main job (creates .venv, installs, runs `lmscale demo`)
#   make test   the test suite (creates .venv, installs, runs pytest + ruff)
#
# Both install every extra (training, Ray, Hugging Face, Lightning, the trackers'
# clients); `pip install lmscale` alone is the torch-free core.
#
# TORCH picks the PyTorch requirement. The default pin installs the CPU build
# where a local wheel exists (as on the project's CI machines) and the
# standard build elsewhere. GPU users: make test TORCH="torch>=2.4"
# or TORCH="torch --index-url https://download.pytorch.org/whl/cu124".

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmscale-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist processes for make test (the suite on 2 cores with 2: 8 to 10 minutes, by the machine);
# --dist worksteal: an idle worker takes queued tests from the other (541 s against 593 s with the default)
TEST_WORKERS ?= 2

.PHONY: demo test bench setup system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,all]"
	touch $(STAMP)

setup: $(STAMP) system-packages

system-packages:
	@bash scripts/install-system-packages.sh

demo: setup
	$(BIN)/lmscale demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
