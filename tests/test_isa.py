"""The same bytes and the same runtime results on another CPU.

Seeded weights used to be calibrated with MXNet's float32 kernels, which oneDNN picks per
instruction set, so `--seed 0` wrote another caffemodel on a machine without AVX-512 and the
golden-hash test failed there. Two ways to stand on another CPU without one:

* the libraries' own switches (oneDNN's `DNNL_MAX_CPU_ISA` / `ONEDNN_MAX_CPU_ISA`, OpenBLAS's
  `OPENBLAS_CORETYPE`): cheap, in `make test`;
* `qemu-x86_64 -cpu MODEL`, user-mode emulation of an older x86-64 CPU: every library,
  ncnn's and OpenCV's run-time dispatch included, reads the emulated CPUID (marked `isa`, run
  by `make test-isa`, which installs qemu-user and also runs the runtime op tests emulated).
"""

from __future__ import annotations

import shutil

import pytest
from golden import converted_hashes, golden

MODEL = "ssd_300_mobilenet0.25_voc"
#: SSE4.1 with a pre-AVX BLAS kernel, and AVX2 (what a CPU without AVX-512 runs).
REDUCED_ISA = {
    "sse41": {"DNNL_MAX_CPU_ISA": "SSE41", "ONEDNN_MAX_CPU_ISA": "SSE41",
              "OPENBLAS_CORETYPE": "Prescott"},
    "avx2": {"DNNL_MAX_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
}
#: qemu's CPU models: AVX2 + FMA without AVX-512, and AVX without FMA or AVX2. (The mxnet
#: 1.9.1 wheel needs AVX: under `Nehalem` its first kernel stops on an illegal instruction.)
EMULATED_CPUS = ("Haswell", "SandyBridge")


@pytest.mark.parametrize("isa", sorted(REDUCED_ISA))
def test_seeded_weights_do_not_depend_on_the_instruction_set(isa, tmp_path):
    """`convert MODEL --seed 0 --target all` writes the golden bytes (all four model files)
    with MXNet's and OpenBLAS's kernels held to an older instruction set."""
    assert converted_hashes(MODEL, tmp_path, env=REDUCED_ISA[isa]) == golden()[MODEL]


@pytest.mark.isa
@pytest.mark.parametrize("cpu", EMULATED_CPUS)
def test_seeded_weights_on_an_emulated_cpu(cpu, tmp_path):
    """The same conversion run whole under qemu's model of an older CPU (about 45 s)."""
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 is missing: `make test-isa` installs qemu-user"
    got = converted_hashes(MODEL, tmp_path, prefix=[qemu, "-cpu", cpu])
    assert got == golden()[MODEL]
