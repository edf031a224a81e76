"""One precision rule for every stage that runs networks (dvcli.runtime)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from dvcli.errors import UserError
from dvcli.runtime import autocast, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_bf16_on_cuda_and_fp32_elsewhere() -> None:
    assert resolve_precision("auto", CUDA) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("fp16", CUDA) == "fp16"


def test_fp16_without_cuda_and_unknown_names_are_refused() -> None:
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(UserError, match="use auto, fp32, bf16 or fp16"):
        resolve_precision("half", CPU)


def test_autocast_runs_matmuls_in_the_resolved_dtype() -> None:
    a = torch.randn(4, 4)
    with autocast("bf16", CPU):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("auto", CPU):
        assert (a @ a).dtype == torch.float32


_MMAPPED_BY_A_48_MIB_BLOCK = """
import ctypes, ctypes.util, sys
from dvcli.runtime import reuse_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
class Mallinfo2(ctypes.Structure):  # glibc's struct mallinfo2 (glibc >= 2.33)
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
before = libc.mallinfo2().hblkhd
block = libc.malloc(48 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_reuse_freed_memory_serves_large_blocks_from_the_heap() -> None:
    def mapped(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", _MMAPPED_BY_A_48_MIB_BLOCK, mode], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    assert mapped("default") >= 48 << 20  # glibc's default: a block this large gets its own mmap
    assert mapped("reuse") == 0  # after reuse_freed_memory: from the heap, reused once freed
