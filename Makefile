# closurejax developer entry points. Needs only python3 (≥ 3.11); the rest goes into .venv.
#
#   make install     .venv with the package and its test extras at the versions of constraints.txt
#                    (redone when pyproject.toml or constraints.txt change; make constraints refreshes it)
#   make test        lint, format check, fast tests            make test-slow   tests marked slow
#                    (both on TEST_JOBS=auto workers: one per core; TEST_JOBS=1 runs them in one process)
#   make test-colabs run colabs/*.ipynb headless on their quick configs (nbclient)
#   make lint        ruff check + format check                 make format      ruff format + fix
#   make demo        experiments/demo.py  (WORKDIR=workdirs/demo)
#   make bench       experiments/benchmark.py  (BENCH_OUT=bench.json, ONLY=solver,... to filter)
#   make reproduce   a whole study: STUDY=paper_a_h_cpu (experiments/configs/$(STUDY).py),
#                    WORKDIR=workdirs/$(STUDY), results copied to experiments/results/$(STUDY)
#   make clean       remove caches (keeps .venv and workdirs)

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
RUFF := $(VENV)/bin/ruff
STAMP := $(VENV)/.installed
SRC := closurejax experiments tests

WORKDIR ?= workdirs/demo
BENCH_OUT ?= bench.json
ONLY ?=
TEST_JOBS ?= auto
PYTEST_JOBS = $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)
STUDY ?= paper_a_h_cpu
# make reproduce: WORKDIR given on the command line, else workdirs/$(STUDY)
STUDY_WORKDIR = $(if $(filter command line,$(origin WORKDIR)),$(WORKDIR),workdirs/$(STUDY))

.PHONY: install constraints test test-slow test-colabs lint format demo bench reproduce clean

install: $(STAMP)

# Re-run only when pyproject.toml changes (or the stamp is missing); creating the venv is skipped
# when one exists.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -c constraints.txt -e '.[test]'
	@touch $@

# Pin what the venv holds now (after an upgrade whose tests pass) as the versions `make install`
# installs; pyproject.toml's ranges stay open for library users.
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(VPY) -m pip freeze --exclude-editable | grep -v -i '^closurejax'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

lint: $(STAMP)
	$(RUFF) check $(SRC)
	$(RUFF) format --check $(SRC)

format: $(STAMP)
	$(RUFF) format $(SRC)
	$(RUFF) check --fix $(SRC)

# The tests run in parallel, one worker per core (TEST_JOBS=1: in this process), each test file
# on one worker so that its module fixtures are built once.
test: lint
	$(VPY) -m pytest $(PYTEST_JOBS)

# pytest exits with 5 when no test is collected: no slow tests yet is not a failure.
test-slow: $(STAMP)
	$(VPY) -m pytest -m slow $(PYTEST_JOBS) || { rc=$$?; [ $$rc -eq 5 ] && echo "no slow tests" || exit $$rc; }

# The notebooks in colabs/, executed headless in a kernel of .venv's python on their quick
# configs (tests/test_colabs.py, marker colab).
test-colabs: $(STAMP)
	$(VPY) -m pytest -m colab tests/test_colabs.py

demo: $(STAMP)
	$(VPY) experiments/demo.py --workdir=$(WORKDIR)

bench: $(STAMP)
	$(VPY) experiments/benchmark.py --output=$(BENCH_OUT) $(if $(ONLY),--only=$(ONLY),)

reproduce: $(STAMP)
	$(VPY) experiments/reproduce.py --config=experiments/configs/$(STUDY).py \
		--workdir=$(STUDY_WORKDIR) --results=experiments/results/$(STUDY)

clean:
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -type d \( -name __pycache__ \
		-o -name .pytest_cache -o -name .ruff_cache -o -name .ipynb_checkpoints \) -print0 \
		| xargs -0 -r rm -rf
	rm -rf build dist
