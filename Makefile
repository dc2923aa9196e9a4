# lenssearch: `make run` sets everything up and runs the demo pipeline; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

# Offline by default: no telemetry, nothing downloaded at run time.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export HF_HUB_OFFLINE := 1
export PATH := $(BIN):$(PATH)

MLFLOW_PORT ?= 5000

.PHONY: install run test bench ui paper clean help inspect-demo

help:
	@echo "make run    - set up .venv and run the demo pipeline (dvc repro)"
	@echo "make test   - set up .venv and run the tests"
	@echo "make bench  - run the speed benchmarks"
	@echo "make ui     - MLflow UI on http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "make paper  - run the pipeline at the paper's scale (configs/paper.yaml), for a GPU machine"
	@echo "make inspect-demo - grade the demo search's candidates in the browser (graders alice, bob)"

# The packages are byte-compiled on all cores after pip (pip compiles on one: 47 s of a 112 s install on 2 cores,
# 26 s this way); a file that does not compile (a package's Python 2 test data) is skipped, as pip skips it.
$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q --no-compile -r requirements.lock
	-$(VENV)/bin/python -m compileall -q -j 0 $$($(VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") > /dev/null 2>&1
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	dvc repro

test: install
	$(VENV)/bin/python -m pytest

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

# Experiments record mlflow-artifacts:/<experiment>; the server serves them from ./mlartifacts (lenssearch.tracking)
ui: install
	mlflow server --backend-store-uri sqlite:///mlflow.db --artifacts-destination ./mlartifacts \
		--host 127.0.0.1 --port $(MLFLOW_PORT)

paper: install
	eval dvc exp run --name paper $$(lenssearch profile-args configs/paper.yaml)

# The visual inspection (issue 16) of the demo search's candidates, with two demo graders; their links are printed
# (and kept in inspections/demo/links.txt). Without the search's outputs, a small synthetic field is used.
INSPECT_PORT ?= 8765
INSPECT_FIELD ?= data/search_field/SYN-A-search
inspect-demo: install
	@if [ -f reports/search/candidates.ecsv ] && [ -d $(INSPECT_FIELD) ]; then \
		lenssearch inspect demo --out inspections/demo --candidates reports/search/candidates.ecsv \
			--field $(INSPECT_FIELD) --port $(INSPECT_PORT); \
	else \
		echo "no reports/search/candidates.ecsv (run 'dvc repro search'): using a synthetic field"; \
		lenssearch inspect demo --out inspections/demo-synthetic --synthetic --port $(INSPECT_PORT); \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
