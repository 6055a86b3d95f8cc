# make demo   - set up .venv if missing, then distill on the bundled digits data (CPU, no downloads)
# make test   - set up .venv if missing, then run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements/ci.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/ci.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: venv
	$(PY) tools/demo.py

.PHONY: venv test demo
