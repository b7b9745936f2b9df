# make demo: convert the default SSD and verify it on samples/; make test: the test suite.
# Both create .venv when it is missing and install the project into it.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ssdconv demo

test: $(STAMP)
	$(VENV)/bin/ruff check ssdconv tests
	$(VENV)/bin/python -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check ssdconv tests

bench:
	test -x .venv-bench/bin/python -a -x .venv-pnnx/bin/pnnx || PY=$(PY) bash bench/setup.sh
	.venv-bench/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf out build *.egg-info
