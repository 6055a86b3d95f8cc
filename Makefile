# make demo   - set up .venv if missing, then distill on the bundled digits data (CPU, no downloads)
# make test   - set up .venv if missing, run the test suite (two processes), then the tests whose values depend
#               on the CPU kernels (marker numerics) again with PyTorch restricted to plain SSE kernels, so that
#               a pin that only holds on this CPU's instruction set fails here too
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile
RESTRICTED_ISA := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2

$(VENV)/.installed: requirements/ci.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/ci.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PYTEST) tests
	$(RESTRICTED_ISA) $(PYTEST) -m numerics tests

demo: venv
	$(PY) tools/demo.py

.PHONY: venv test demo
