"""One precision rule for every stage that runs networks (dvcli.runtime)."""

from __future__ import annotations

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
