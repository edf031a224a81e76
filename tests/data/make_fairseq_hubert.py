"""Regenerate the real-fairseq HuBERT fixtures in this folder (not run by the tests).

Needs fairseq, which does not install into dv's environment: use a scratch virtual environment, e.g.

    python -m venv /tmp/fsq && /tmp/fsq/bin/pip install torch fairseq-fixed   # fairseq-fixed 0.12.3.1
    /tmp/fsq/bin/python tests/data/make_fairseq_hubert.py tests/data

Writes two tiny random HuBERTs in fairseq's own checkpoint layout, built by fairseq's HubertModel
and saved the way fairseq's trainer saves them, and what fairseq's
``extract_features(source, padding_mask=None, mask=False, output_layer=L)`` returns for two waveforms
at every layer:

- ``fairseq_hubert_base.pt``: Base-style (group-norm extractor, post-norm transformer), the config
  as an omegaconf DictConfig with an unresolved ``${task.label_rate}`` and fairseq enums, and
  ``task_state`` holding fairseq ``Dictionary`` objects, as in the published hubert_base_ls960.pt.
- ``fairseq_hubert_large.pt``: Large-style (layer-norm extractor, pre-norm transformer,
  ``normalize=True``, conv bias), the config as the plain dict recent fairseq writes.
- ``fairseq_hubert_expected.pt``: ``{"wavs": [wav, ...], name: {"layers": {L: [features, ...]}}}``.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import checkpoint_utils
from fairseq.data.dictionary import Dictionary
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
from omegaconf import OmegaConf

TINY = dict(
    conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
    encoder_layers=3,
    encoder_embed_dim=24,
    encoder_ffn_embed_dim=40,
    encoder_attention_heads=2,
    conv_pos=16,
    conv_pos_groups=4,
    final_dim=8,
)


def dictionary() -> Dictionary:
    d = Dictionary()
    for i in range(10):
        d.add_symbol(str(i))
    return d


def build(name: str, out: Path, wavs: list[torch.Tensor], *, large: bool, dictconfig: bool) -> dict:
    torch.manual_seed(1 if large else 0)
    model_cfg = HubertConfig(
        **TINY,
        extractor_mode="layer_norm" if large else "default",
        layer_norm_first=large,
        conv_bias=large,
    )
    task_cfg = HubertPretrainingConfig(data="/data", labels=["km"], label_rate=50.0, normalize=large)
    cfg = OmegaConf.create({"model": OmegaConf.structured(model_cfg), "task": OmegaConf.structured(task_cfg)})
    cfg.model._name = "hubert"
    cfg.task._name = "hubert_pretraining"
    dictionaries = [dictionary()]
    model = HubertModel(cfg.model, cfg.task, dictionaries).eval()
    with torch.no_grad():  # random, non-trivial norms and biases
        for pname, p in model.named_parameters():
            if "norm" in pname or pname.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    state = {
        "args": None,
        # A structured config with fairseq's enums cannot be pickled; the DictConfigs found in older
        # checkpoints are plain ones, interpolations left unresolved.
        "cfg": (
            OmegaConf.create(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
            if dictconfig
            else OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        ),
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "HubertCriterion",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": np.float64(3.25)},
                "num_updates": 100,
            }
        ],
        "task_state": {"dictionaries": dictionaries},
        "extra_state": {
            "metrics": {},
            "previous_training_time": np.float64(12.5),
            "train_iterator": {"epoch": 1, "iterations_in_epoch": 3, "shuffle": True},
        },
        "last_optimizer_state": None,
    }
    path = out / f"fairseq_hubert_{name}.pt"
    checkpoint_utils.torch_persistent_save(state, str(path))

    # fairseq itself must accept the file (its loader predates weights_only; the file is ours).
    original_load = torch.load
    torch.load = lambda *a, **k: original_load(*a, **{**k, "weights_only": False})
    try:
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides={"data": "/data"})
    finally:
        torch.load = original_load
    reloaded = models[0].eval()

    layers = {}
    with torch.no_grad():
        for layer in range(1, TINY["encoder_layers"] + 1):
            feats = []
            for wav in wavs:
                x = wav[None]
                if large:  # what fairseq's dump_hubert_feature.py does when task.normalize is set
                    x = F.layer_norm(x, x.shape)
                feat, _ = reloaded.extract_features(x, padding_mask=None, mask=False, output_layer=layer)
                ref, _ = model.extract_features(x, padding_mask=None, mask=False, output_layer=layer)
                assert torch.equal(feat, ref)
                feats.append(feat[0].clone())
            layers[layer] = feats
    return {"layers": layers}


def main(out: str) -> None:
    folder = Path(out)
    g = torch.Generator().manual_seed(7)
    wavs = [0.1 * torch.randn(16000, generator=g), 0.3 * torch.randn(12345, generator=g) + 0.05]
    expected = {
        "wavs": wavs,
        "base": build("base", folder, wavs, large=False, dictconfig=True),
        "large": build("large", folder, wavs, large=True, dictconfig=False),
    }
    torch.save(expected, folder / "fairseq_hubert_expected.pt")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent))
