"""Monotonic alignment search: numba kernel and torch fallback vs the textbook double loop.

    python bench/mas.py                        # batch 16 of ~10 s utterances, 2 threads
    python bench/mas.py --batch 32 --seconds 15 --threads 4

Times, in one run and interleaved (medians of ``--repeats``):

- ``numba``: the default backend (``dvcli.models.vits.monotonic_align``);
- ``torch``: the pure-torch fallback (loop over frames, vectorised over batch and tokens);
- ``reference``: the plain Python double loop kept in the tests, timed on one example and scaled
  by the batch size (it is linear in the number of examples);
- ``cython``: Glow-TTS' Cython kernel from the ``monotonic-alignment-search`` package (what Coqui
  TTS uses), when importable;
- a whole tiny-config training step on the same batch shape, to show MAS's share of a step.

Frames are at 62.5 Hz (16 kHz, hop 256) and tokens are HuBERT units at 50 Hz, so each utterance has
0.8 tokens per frame, which is the MAS workload of DINO-VITS training.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dvcli.models.vits import VitsBatch, VitsConfig, VitsTrainer
from dvcli.models.vits.monotonic_align import maximum_path_numba, maximum_path_torch
from dvcli.models.vits.train_step import build
from tests.models.vits.test_vits_monotonic_align import reference_maximum_path


def make_batch(batch: int, seconds: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    secs = rng.uniform(0.6 * seconds, seconds, batch)
    secs[0] = seconds
    y_len = (secs * 16000 / 256).astype(int)
    x_len = (secs * 50).astype(int)
    scores = torch.from_numpy(rng.normal(size=(batch, y_len.max(), x_len.max())).astype(np.float32))
    mask = torch.zeros_like(scores)
    for i in range(batch):
        mask[i, : y_len[i], : x_len[i]] = 1
    return scores, mask, secs


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="longest utterance in the batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scores, mask, secs = make_batch(args.batch, args.seconds)
    print(
        f"batch {args.batch}, frames x tokens up to {scores.shape[1]} x {scores.shape[2]}, "
        f"{args.threads} threads, median of {args.repeats}"
    )

    try:
        from monotonic_alignment_search import maximum_path_cython
    except ImportError:
        maximum_path_cython = None

    # Equality first (and numba's compilation / cache load out of the timings).
    fast = maximum_path_numba(scores, mask)
    assert torch.equal(fast, maximum_path_torch(scores, mask)), "numba and torch paths differ"
    if maximum_path_cython is not None:  # its API is (B, T_x, T_y)
        cy = maximum_path_cython(scores.transpose(1, 2).contiguous(), mask.transpose(1, 2).contiguous())
        assert torch.equal(fast, cy.transpose(1, 2)), "cython path differs"

    # One whole tiny training step with the same frames and tokens (real units, synthetic audio).
    config = VitsConfig.tiny(n_units=1000)
    trainer = VitsTrainer(*build(config))
    wav_lengths = torch.from_numpy((secs * 16000 / 256).astype(int) * 256)
    wav = torch.randn(args.batch, int(wav_lengths.max())) * 0.1
    unit_lengths = torch.from_numpy((secs * 50).astype(int))
    units = torch.randint(0, 1000, (args.batch, int(unit_lengths.max())))
    batch = VitsBatch(units, unit_lengths, wav, wav_lengths)
    emb = torch.randn(args.batch, config.speaker_embedding_dim)
    trainer.step(batch, emb)

    runs: dict[str, list[float]] = {"numba": [], "torch": [], "tiny training step": []}
    if maximum_path_cython is not None:
        runs["cython"] = []
    for _ in range(args.repeats):  # interleaved, so machine load hits every contender alike
        runs["numba"].append(timed(maximum_path_numba, scores, mask))
        runs["torch"].append(timed(maximum_path_torch, scores, mask))
        if maximum_path_cython is not None:
            s_t, m_t = scores.transpose(1, 2).contiguous(), mask.transpose(1, 2).contiguous()
            runs["cython"].append(timed(maximum_path_cython, s_t, m_t))
        runs["tiny training step"].append(timed(trainer.step, batch, emb))

    # The reference on the longest example, scaled to the batch by its share of DP cells.
    one = (scores[0] * mask[0]).numpy()
    t_ref = timed(reference_maximum_path, one, int(mask[0, :, 0].sum()), int(mask[0, 0].sum()))
    cells = mask.sum(dim=(1, 2)).numpy()
    reference = t_ref * cells.sum() / cells[0]

    medians = {name: statistics.median(times) for name, times in runs.items()}
    medians["reference (python loop)"] = reference
    step = medians["tiny training step"]
    print(f"{'implementation':<26}{'time (ms)':>12}{'vs numba':>10}{'share of tiny step':>20}")
    for name, seconds in medians.items():
        share = f"{100 * seconds / step:.1f}%" if name != "tiny training step" else ""
        print(f"{name:<26}{1000 * seconds:>12.1f}{seconds / medians['numba']:>9.1f}x{share:>20}")


if __name__ == "__main__":
    main()
