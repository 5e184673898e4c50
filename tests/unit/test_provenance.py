"""lffood.runtime.provenance: the one line that says what made a result, including what changes its floats
(CPU instruction set, torch and its BLAS and CPU kernels, numpy's BLAS, thread counts), and that the
Snakefile's call of it does not import torch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from lffood.runtime import cpu_info, instruction_set, numeric_stack, provenance, torch_blas

CPUINFO_X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512bw
bogomips\t: 5300.00

processor\t: 1
model name\t: a second processor's name that is not read
flags\t\t: fpu sse
"""
CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize("flags, expected", [
    ({"sse", "sse2", "avx", "avx2", "avx512f"}, "AVX-512"),
    ({"sse2", "sse4_2", "avx", "avx2", "fma"}, "AVX2"),  # avx512bw without avx512f is not AVX-512 here
    ({"sse2", "sse4_2", "avx"}, "AVX"),
    ({"sse", "sse2", "sse4_1", "sse4_2"}, "SSE4.2"),
    ({"sse", "sse2"}, "SSE2"),
    ({"fp", "asimd", "sve"}, "SVE"),
    ({"fp", "asimd"}, "NEON"),
    (set(), ""),
])
def test_instruction_set_is_the_widest_extension(flags, expected):
    assert instruction_set(flags) == expected


def test_cpu_info_reads_the_first_processor(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text(CPUINFO_X86)
    model, flags = cpu_info(x86)
    assert model == "AMD EPYC 7R13 Processor"
    assert {"avx512f", "avx2", "sse2"} <= flags and instruction_set(flags) == "AVX-512"
    arm = tmp_path / "arm"
    arm.write_text(CPUINFO_ARM)
    model, flags = cpu_info(arm)
    assert model  # no "model name" on Arm: platform's machine name
    assert instruction_set(flags) == "NEON"
    model, flags = cpu_info(tmp_path / "absent")
    assert model and flags == set()


def test_torch_blas_from_the_build_summary():
    mkl = ("PyTorch built with:\n  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for "
           "Intel(R) 64 architecture applications\n  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl")
    assert torch_blas(mkl) == "MKL 2024.2"
    assert torch_blas("  - Build settings: BLAS_INFO=open, BUILD_TYPE=Release") == "OpenBLAS"
    assert torch_blas("no build settings") == ""
    assert torch_blas(torch.__config__.show())  # this torch names one


def test_provenance_names_what_changes_the_floats(tmp_path):
    text = provenance(tmp_path)  # not a git checkout
    assert text.startswith("commit unknown;") and "CPU cores" in text and "\n" not in text
    isa = instruction_set(cpu_info()[1])
    if isa:
        assert f"({isa})" in text
    assert f"torch {torch.__version__} (" in text
    assert f"CPU kernels {torch.backends.cpu.get_cpu_capability()}" in text
    n = torch.get_num_threads()
    assert f"{n} thread{'' if n == 1 else 's'}" in text
    assert f"numpy {np.__version__}" in text
    assert text.endswith(__import__("datetime").date.today().isoformat())


def test_thread_variables_are_named_where_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    stack = numeric_stack()
    assert "OMP_NUM_THREADS=3" in stack and "MKL_NUM_THREADS" not in stack


def test_provenance_without_torch_does_not_import_it():
    """The Snakefile calls it with load_torch=False at every parse (each snakemake call, each cluster job):
    importing torch there would cost a second each time."""
    code = ("import sys; from lffood.runtime import provenance; text = provenance('.', load_torch=False); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(text)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("commit ") and "numpy " in line and "CPU kernels" not in line
    from importlib.metadata import version

    assert f"torch {version('torch')}" in line
