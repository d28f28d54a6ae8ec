# make demo / make test: create .venv if missing, install torch (CPU build, pinned) and mdfbridge, then run.
# make test: ruff, then mypy on the package (.ci/mypy.sh), then pytest (everything, the docs build included).
# make test-fast: the same set-up, then pytest without the tests marked slow (no ruff, no mypy).
# make fuzz: the same set-up, then the hypothesis fuzz properties (tests/fuzz_targets.py), 5,000 examples each.
# make docs: the same set-up, then the API reference from the docstrings into site/ (mkdocs build --strict).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mdfbridge-installed
# pytest-xdist workers for `make test` (the CI machine has 2 cores)
WORKERS ?= 2

.PHONY: demo test test-fast fuzz docs bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,docs]'
	@# graphviz's `dot` renders `mdfbridge graph`; best effort (without it those tests skip and the CLI says why)
	@command -v dot >/dev/null || (command -v apt-get >/dev/null && timeout 300 sh -c \
	  'apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq graphviz >/dev/null 2>&1') \
	  || echo "note: graphviz 'dot' is not installed; 'mdfbridge graph' to PNG/SVG is unavailable"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/xor_demo.py

test: $(STAMP)
	$(PY) -m ruff check mdfbridge importers exporters tests benchmarks examples docs/tools
	bash .ci/mypy.sh $(PY)
	$(PY) -m pytest -q -n $(WORKERS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) -m "not slow"

fuzz: $(STAMP)
	MDFBRIDGE_FUZZ_EXAMPLES=$${MDFBRIDGE_FUZZ_EXAMPLES:-5000} $(PY) -m pytest -q -p no:cacheprovider tests/fuzz_targets.py

docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build site *.egg-info
