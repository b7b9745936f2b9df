# make demo: convert the default SSD and verify it on samples/; make test: the test suite.
# Both create .venv when it is missing and install the project into it.
# make cpp-example-check (opt-in, not in `make test`: the first run builds ncnn's C++ library from
# the registry's sdist, 10-25 min on 2 cores): builds the C++ example --ncnn-example writes and
# compares its detections with the Python ncnn runner's on the sample images.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean cpp-example-check

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

cpp-example-check: $(STAMP)
	NCNN_PREFIX=$$(bash bench/build_ncnn_lib.sh) && \
	$(VENV)/bin/python bench/cpp_example.py --ncnn-dir "$$NCNN_PREFIX" $(CPP_EXAMPLE_ARGS)

clean:
	rm -rf out build *.egg-info
