"""Data parallelism in train-joint computes what one process computes: 2 gloo processes x batch B give
the gradients of 1 process x batch 2B (issue 16, point 6).

The step's random draws (segment slices, posterior and duration-flow noise) come from per-rank
generators and dropout from each process's RNG, so the test sets the draws to zero and dropout off
for both runs; with equal-length utterances every loss is then a mean over examples, and DDP's
gradient average must equal the full batch's gradient (to float32 summation order). The
speaker encoder is frozen here: its BatchNorm layers normalise by each process's batch (as
3D-Speaker's and DINO's DDP training do; SyncBatchNorm is CUDA-only), so with a training encoder
the two are equal only in expectation.
"""

from __future__ import annotations

import random
from pathlib import Path
from unittest import mock

import pytest
import torch

from dvcli.config import load_config
from dvcli.joint.data import collate
from dvcli.manifest import read_manifest, write_units
from dvcli.models.vits.train_step import unwrap
from dvcli.testing import make_corpus
from dvcli.training.distributed import DistInfo, launch
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare
from stages.train_joint import TrainJointConfig, make_plan

K = 20


def _zeros(
    *size: object, generator: object = None, dtype: torch.dtype | None = None, device: object = None, **_: object
):
    shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    return torch.zeros(tuple(shape), dtype=dtype or torch.float32, device=device)  # type: ignore[arg-type]


def _one_step(info: DistInfo, config: TrainJointConfig, work: Path, per_rank: int) -> dict[str, torch.Tensor]:
    """One train-joint step on this rank's share of the first ``per_rank x world`` utterances; the
    generator's and discriminators' gradients after DDP's all-reduce."""
    from dvcli.joint.speaker import set_modes
    from stages.train_joint_loop import _setup, _step

    plan = make_plan(config)
    run = _setup(info, config, plan, work / f"rank{info.rank}")
    items = [run.loader.dataset[i] for i in range(info.rank * per_rank, (info.rank + 1) * per_rank)]
    batch, speakers = collate(items)
    set_modes(run.student, "frozen")
    with mock.patch.object(torch, "randn", _zeros), mock.patch.object(torch, "rand", _zeros):
        _step(run, run.student, batch, speakers, step=0)
    grads = {}
    for name, module in (("g", run.trainer.generator), ("d", run.trainer.discriminator)):
        for key, p in unwrap(module).named_parameters():
            if p.grad is not None:
                grads[f"{name}.{key}"] = p.grad.detach().clone()
    return grads


@pytest.mark.timeout(300)
def test_two_processes_give_the_gradients_of_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    make_corpus(tmp_path / "corpus", speakers=2, utterances=2, seconds=(1.0, 1.0))
    manifest = prepare(PrepareConfig(source=tmp_path / "corpus", out=tmp_path / "data")).manifest
    rng = random.Random(0)
    rows = read_manifest(manifest)
    assert len({round(r.duration, 3) for r in rows}) == 1  # equal lengths: every loss is a mean over examples
    (tmp_path / "units").mkdir()
    write_units(tmp_path / "units" / "units.tsv", {r.id: [rng.randrange(K) for _ in range(50)] for r in rows})
    (tmp_path / "units" / "meta.json").write_text(f'{{"k": {K}, "frame_rate": 50.0}}')
    config = load_config(
        TrainJointConfig,
        values={
            "manifest": manifest,
            "units": tmp_path / "units",
            "out": tmp_path / "out",
            "model": "tiny",
            "speaker_model": "tiny",
            "vits": {"segment_size": 2048, "add_blank": False, "dropout": 0.0, "duration_dropout": 0.0},
            "dedup": False,
            "freeze_speaker": True,
            "ref_augment": False,
            "batch_size": 2,
            "workers": 0,
            "device": "cpu",
        },
    )
    single = launch(_one_step, 1, config, tmp_path / "single", 4, device="cpu")
    double = launch(_one_step, 2, config, tmp_path / "double", 2, device="cpu")
    assert single.keys() == double.keys() and len(single) > 50
    assert any(float(g.abs().max()) > 0 for g in single.values())
    for key in single:
        # Equal up to float32 summation order: within 1e-4 of the tensor's largest gradient.
        error = float((double[key] - single[key]).abs().max())
        assert error <= 1e-4 * float(single[key].abs().max()) + 1e-7, (key, error)
