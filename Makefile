# Multi-scale detection & keypoint heatmaps vs regression — a reproducible CPU-first study.
# `make help` lists the targets.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PROFILE     ?= cpu
TEX_PKGS    := latexmk texlive-latex-recommended texlive-fonts-recommended texlive-science
APT_EXTRA   := libgoogle-perftools4 mupdf-tools
# glibc returns large activation buffers to the OS after every step unless told not to; keeping them
# makes CPU training 5-50% faster (see `make bench`).
export GLIBC_TUNABLES := glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help setup report report-smoke pdf test test-unit test-slow test-nb bench lab readme verify status clean notebooks-outputs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (hwlib)" > /dev/null
	@touch $@

setup: $(VENV)/.installed ## create .venv, install pinned requirements + hwlib (editable), register the kernel, install TeX if missing
	@if ! command -v latexmk > /dev/null || ! command -v mutool > /dev/null || ! ls /usr/lib/*/libtcmalloc.so.4 > /dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing TeX (tcmalloc for the benchmark, mutool for the report font check) from Debian's packages ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEX_PKGS) $(APT_EXTRA) > /dev/null; \
	  elif ! command -v latexmk > /dev/null; then \
	    echo "latexmk missing; run as root: apt-get update && apt-get install -y $(TEX_PKGS) $(APT_EXTRA)"; exit 1; \
	  fi; \
	fi

report: setup ## rebuild every notebook at PROFILE (default cpu) from the run store and build report/report.pdf (RETRAIN=1: train every run again)
	$(PY) -m hwlib.pipeline --profile $(PROFILE) --pdf $(if $(RETRAIN),--retrain)

report-smoke: setup ## the same at the smoke profile, into runs/smoke/ (what CI builds)
	$(PY) -m hwlib.pipeline --profile smoke --pdf

pdf: setup ## rebuild only the PDF from the committed figures and numbers
	$(PY) -m hwlib.pipeline --profile $(PROFILE) --pdf-only

test: setup test-unit test-slow test-nb ## unit tests, the end-to-end tests, then nbval on the notebooks at smoke

test-unit: setup ## unit tests of hwlib (the fast ones: a few minutes on any 2-core CPU)
	$(PY) -m pytest tests -q -m "not slow"

test-slow: setup ## end-to-end tests: smoke pipeline runs, a killed run, the quick benchmark, two-process DDP
	$(PY) -m pytest tests -q -m slow

test-nb: setup ## nbval: execute the notebooks (smoke) and compare the outputs tagged NBVAL_CHECK_OUTPUT
	$(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/

bench: setup ## throughput benchmark -> report/generated/benchmark.json (QUICK=1 for the 2-minute version)
	$(PY) -m hwlib.bench $(if $(QUICK),--quick)

lab: setup ## JupyterLab on the venv kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

readme: ## regenerate the README results table from report/generated/
	$(PY) -m hwlib.readme

verify: setup ## retrain stored runs and compare with their records (RUNS="02_seed_exact_s0 04_heatmap_s0", or SAMPLE=K)
	$(PY) -m hwlib.verify $(RUNS) $(if $(SAMPLE),--sample $(SAMPLE))

status: setup ## what the run store holds and lacks per training set, and the training hours left on this CPU
	$(PY) -m hwlib.stages status

clean: ## remove runs/ and LaTeX build files (keeps the committed results and the run store)
	rm -rf runs report/build

notebooks-outputs: setup ## re-execute the notebooks in place at smoke (their stored outputs are what nbval checks)
	for nb in notebooks/0*.ipynb; do $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; done
