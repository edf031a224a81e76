"""fairseq's own layer-L HuBERT dump, timed; run by bench/extract_units.py with a Python that has fairseq.

fairseq does not install into dv's environment; give this script a scratch venv's Python, e.g.

    python -m venv /tmp/fsq && /tmp/fsq/bin/pip install torch fairseq-fixed   # fairseq-fixed 0.12.3.1

Two jobs:

- ``--build CKPT``: a randomly initialised HuBERT Base (fairseq's default ``HubertConfig``: 12 layers,
  768 wide) built by fairseq and saved in fairseq's checkpoint layout (as tests/data/make_fairseq_hubert.py
  does for the tiny fixtures);
- ``--dump CKPT --files LIST --out DIR``: what fairseq's ``examples/hubert/simple_kmeans/dump_hubert_feature.py``
  does, timed from loading the checkpoint to the last feature file written: load with
  ``checkpoint_utils.load_model_ensemble_and_task``, read each file, ``extract_features(source,
  padding_mask=None, mask=False, output_layer=L)`` in chunks of 1.6M samples, write ``.npy``.
  Prints one JSON line ``{"seconds": ..., "files": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

MAX_CHUNK = 1_600_000  # samples per forward, as dump_hubert_feature.py


def build(path: Path) -> None:
    from fairseq import checkpoint_utils
    from fairseq.data.dictionary import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    cfg = OmegaConf.create(
        {
            "model": OmegaConf.structured(HubertConfig()),
            "task": OmegaConf.structured(HubertPretrainingConfig(data="/data", labels=["km"], label_rate=50.0)),
        }
    )
    cfg.model._name = "hubert"
    cfg.task._name = "hubert_pretraining"
    dictionary = Dictionary()
    for i in range(500):
        dictionary.add_symbol(str(i))
    model = HubertModel(cfg.model, cfg.task, [dictionary]).eval()
    state = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "HubertCriterion",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": 0.0},
                "num_updates": 0,
            }
        ],
        "task_state": {"dictionaries": [dictionary]},
        "extra_state": {},
        "last_optimizer_state": None,
    }
    checkpoint_utils.torch_persistent_save(state, str(path))


def dump(path: Path, files: list[Path], layer: int, out: Path) -> float:
    from fairseq import checkpoint_utils

    original_load = torch.load  # fairseq's loader predates weights_only; the file is our own
    torch.load = lambda *a, **k: original_load(*a, **{**k, "weights_only": False})
    start = time.perf_counter()
    try:
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides={"data": "/data"})
    finally:
        torch.load = original_load
    model = models[0].eval()
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for index, file in enumerate(files):
            wav, _ = sf.read(str(file), dtype="float32")
            x = torch.from_numpy(wav).view(1, -1)
            feats = []
            for begin in range(0, x.size(1), MAX_CHUNK):
                chunk = x[:, begin : begin + MAX_CHUNK]
                feat, _ = model.extract_features(source=chunk, padding_mask=None, mask=False, output_layer=layer)
                feats.append(feat.squeeze(0))
            np.save(out / f"{index}.npy", torch.cat(feats).numpy())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path)
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--files", type=Path, help="a text file, one audio path per line")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.build:
        build(args.build)
    if args.dump:
        files = [Path(line) for line in args.files.read_text(encoding="utf-8").splitlines() if line]
        seconds = dump(args.dump, files, args.layer, args.out)
        print(json.dumps({"seconds": seconds, "files": len(files), "torch": torch.__version__}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
