# make demo: convert the default SSD and verify it on samples/; make test: the test suite.
# Both create .venv when it is missing and install the project into it.
# make cpp-example-check (opt-in, not in `make test`: the first run builds ncnn's C++ library from
# the registry's sdist, 10-25 min on 2 cores): builds the C++ example --ncnn-example writes and
# compares its detections with the Python ncnn runner's on the sample images.
# make test-all: make test plus the model sweeps' remaining cases (marked `sweep` in tests/).
# make test-isa (opt-in, ~25 min): the suite with MXNet's oneDNN and OpenBLAS held to AVX2 (what a
# CPU without AVX-512 runs), then the seeded conversion and the runtime op tests under qemu-x86_64
# emulating older CPUs (installs Debian's qemu-user): see tests/test_isa.py.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-all test-isa lint bench clean cpp-example-check

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ssdconv demo

test: $(STAMP)
	$(VENV)/bin/ruff check ssdconv tests
	$(VENV)/bin/python -m pytest -q -m "not isa and not sweep" tests

test-all: $(STAMP)
	$(VENV)/bin/ruff check ssdconv tests
	$(VENV)/bin/python -m pytest -q -m "not isa" tests

AVX2_ENV := DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell
# cpu=tests: Nehalem (no AVX) only for ncnn's own layer, as the mxnet wheel needs AVX
QEMU_RUNS := Haswell=runtime SandyBridge=runtime Nehalem=tests/test_yolo_native.py
RUNTIME_TESTS := tests/test_yolo_native.py tests/test_yolo_ops.py tests/test_ncnn_fuse.py \
	tests/test_ncnn_backend.py tests/test_caffe_backend.py

test-isa: $(STAMP)
	command -v qemu-x86_64 >/dev/null || (apt-get update -qq && apt-get install -y -qq qemu-user)
	$(AVX2_ENV) $(VENV)/bin/python -m pytest -q -m "not isa and not sweep" tests
	$(VENV)/bin/python -m pytest -q -m isa tests
	mkdir -p build
	for run in $(QEMU_RUNS); do cpu=$${run%%=*}; tests=$${run#*=}; \
	  [ "$$tests" = runtime ] && tests="$(RUNTIME_TESTS)"; echo "== qemu-x86_64 -cpu $$cpu"; \
	  QEMU_CPU=$$cpu qemu-x86_64 $(VENV)/bin/python -m pytest -q -p no:cacheprovider \
	    $$tests > build/isa-$$cpu.log 2>&1; rc=$$?; \
	  grep -v "TCG doesn't support" build/isa-$$cpu.log | tail -3; [ $$rc = 0 ] || exit 1; done

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

# make arcface-example-check (opt-in, not needed by `make test`, where it skips): runs ncnn's OWN
# examples/arcface.cpp, built by /work/shared/tools/build_runtimes.sh into $SSDCONV_RUNTIMES/bin
# (default $${TMPDIR:-/tmp}/runtimes), on the converted insightface model with a stand-in face
# detector, and compares its Similarity with the Python ncnn runner's and float64 MXNet's
# (tests/test_arcface_example.py). Fails, rather than skips, when the example is not built.
.PHONY: arcface-example-check
arcface-example-check: $(STAMP)
	SSDCONV_RUNTIMES="$${SSDCONV_RUNTIMES:-$${TMPDIR:-/tmp}/runtimes}" SSDCONV_REQUIRE_ARCFACE=1 \
	$(VENV)/bin/python -m pytest -q -s -rs -p no:cacheprovider tests/test_arcface_example.py

# make retinaface-example-check (opt-in; skipped by `make test` as "not run" without the binary):
# runs ncnn's OWN examples/retinaface.cpp, built unmodified by build_runtimes.sh, on ssdconv's ncnn
# conversion of a seeded RetinaFace (as mnet.25-opt.param/.bin) on the sample photos with faces,
# and compares the faces it prints with ssdconv's float64 model of that decode on MXNet's outputs
# (tests/test_retinaface_example.py). Fails, rather than skips, when the example is not built.
.PHONY: retinaface-example-check
retinaface-example-check: $(STAMP)
	SSDCONV_RUNTIMES="$${SSDCONV_RUNTIMES:-$${TMPDIR:-/tmp}/runtimes}" SSDCONV_REQUIRE_RETINAFACE=1 \
	$(VENV)/bin/python -m pytest -q -s -rs -p no:cacheprovider tests/test_retinaface_example.py

# make rknn-bench (opt-in): ssdconv's headless caffe and ONNX conversions of the demo SSD and
# YOLOv3 and two seeded zoo SSDs in Rockchip's RKNN simulator, fp16 and int8, against Gluon
# float32 (bench/rknn_target.py, `bench/run.py --stage rknn`); writes BENCHMARKS.md's "RKNN
# simulator" section. rknn-toolkit2 lives in .venv-rknn (bench/setup_rknn.sh, ~3 GB with torch),
# made when missing. RKNN_ARGS: more options, e.g. --target-platform rk3588 --count 100.
.PHONY: rknn-bench
rknn-bench:
	test -x .venv-bench/bin/python || PY=$(PY) bash bench/setup.sh
	test -x .venv-rknn/bin/python || PY=$(PY) bash bench/setup_rknn.sh
	.venv-bench/bin/python bench/run.py --stage rknn $(RKNN_ARGS)
