"""HuBERT features from fairseq checkpoints equal fairseq's extract_features(output_layer=L).

Two independent references:

- ``tests/data/fairseq_hubert_*.pt``: tiny random HuBERTs built and saved by real fairseq
  (fairseq-fixed 0.12.3.1, see ``tests/data/make_fairseq_hubert.py``), with the features fairseq's
  own ``extract_features`` returned for them;
- ``reference_features`` below: fairseq's forward written out in plain torch from the fairseq-named
  weights of a checkpoint generated here (cfg dict or old-style args Namespace).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dvcli.errors import UserError
from dvcli.features.fairseq import parse_conv_layers, read_fairseq
from dvcli.features.hubert import load_hubert, model_from_fairseq

DATA = Path(__file__).resolve().parents[1] / "data"
CONV = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
DIM, FFN, HEADS, LAYERS, POS, POS_GROUPS = 12, 20, 3, 3, 8, 2


# -- a fairseq-layout checkpoint and fairseq's computation, written out ------------------------------


def fairseq_state(large: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under fairseq's HuBERT key names."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g)

    s: dict[str, torch.Tensor] = {}
    cin = 1
    for i, (c, k, _) in enumerate(CONV):
        s[f"feature_extractor.conv_layers.{i}.0.weight"] = r(c, cin, k, scale=1 / math.sqrt(cin * k))
        if large:
            s[f"feature_extractor.conv_layers.{i}.0.bias"] = r(c)
            s[f"feature_extractor.conv_layers.{i}.2.1.weight"] = 1 + r(c)
            s[f"feature_extractor.conv_layers.{i}.2.1.bias"] = r(c)
        elif i == 0:
            s["feature_extractor.conv_layers.0.2.weight"] = 1 + r(c)
            s["feature_extractor.conv_layers.0.2.bias"] = r(c)
        cin = c
    s["layer_norm.weight"], s["layer_norm.bias"] = 1 + r(cin), r(cin)
    s["post_extract_proj.weight"], s["post_extract_proj.bias"] = r(DIM, cin), r(DIM)
    s["encoder.pos_conv.0.weight_g"] = 1 + r(1, 1, POS).abs()
    s["encoder.pos_conv.0.weight_v"] = r(DIM, DIM // POS_GROUPS, POS)
    s["encoder.pos_conv.0.bias"] = r(DIM)
    for n in range(LAYERS):
        p = f"encoder.layers.{n}."
        for proj in ("k", "v", "q", "out"):
            s[p + f"self_attn.{proj}_proj.weight"], s[p + f"self_attn.{proj}_proj.bias"] = r(DIM, DIM), r(DIM)
        s[p + "self_attn_layer_norm.weight"], s[p + "self_attn_layer_norm.bias"] = 1 + r(DIM), r(DIM)
        s[p + "fc1.weight"], s[p + "fc1.bias"] = r(FFN, DIM), r(FFN)
        s[p + "fc2.weight"], s[p + "fc2.bias"] = r(DIM, FFN), r(DIM)
        s[p + "final_layer_norm.weight"], s[p + "final_layer_norm.bias"] = 1 + r(DIM), r(DIM)
    s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"] = 1 + r(DIM), r(DIM)
    # Pretraining-only weights the converter must drop.
    s["mask_emb"], s["label_embs_concat"] = r(DIM), r(14, 8)
    s["final_proj.weight"], s["final_proj.bias"] = r(8, DIM), r(8)
    return s


def model_cfg(large: bool) -> dict:
    return {
        "_name": "hubert",
        "extractor_mode": "layer_norm" if large else "default",
        "encoder_layers": LAYERS,
        "encoder_embed_dim": DIM,
        "encoder_ffn_embed_dim": FFN,
        "encoder_attention_heads": HEADS,
        "activation_fn": "gelu",
        "layer_norm_first": large,
        "conv_feature_layers": "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
        "conv_bias": large,
        "conv_pos": POS,
        "conv_pos_groups": POS_GROUPS,
        "label_rate": 50.0,
    }


def write_checkpoint(path: Path, large: bool, style: str = "cfg") -> Path:
    state = fairseq_state(large)
    if style == "cfg":
        ckpt = {
            "cfg": {"model": model_cfg(large), "task": {"_name": "hubert_pretraining", "normalize": large}},
            "model": state,
            "args": None,
        }
    else:  # the oldest fairseq: one argparse.Namespace for model and task
        fields = {k: v for k, v in model_cfg(large).items() if k != "_name"}
        ckpt = {"args": argparse.Namespace(arch="hubert", normalize=large, **fields), "model": state}
    torch.save(ckpt, path)
    return path


def reference_features(state: dict[str, torch.Tensor], wav: torch.Tensor, layer: int, large: bool) -> torch.Tensor:
    """fairseq's ``HubertModel.extract_features(wav[None], mask=False, output_layer=layer)``, by hand."""
    x = wav[None, None]  # (1, 1, T)
    for i, (c, k, stride) in enumerate(CONV):
        p = f"feature_extractor.conv_layers.{i}."
        x = F.conv1d(x, state[p + "0.weight"], state.get(p + "0.bias"), stride=stride)
        if large:  # LayerNorm over channels in every block
            x = F.layer_norm(x.transpose(1, 2), (c,), state[p + "2.1.weight"], state[p + "2.1.bias"]).transpose(1, 2)
        elif i == 0:  # GroupNorm(c, c): each channel over time
            x = F.group_norm(x, c, state[p + "2.weight"], state[p + "2.bias"])
        x = F.gelu(x)
    x = x.transpose(1, 2)  # (1, F, C)
    x = F.layer_norm(x, (x.shape[-1],), state["layer_norm.weight"], state["layer_norm.bias"])
    x = F.linear(x, state["post_extract_proj.weight"], state["post_extract_proj.bias"])  # (1, F, D)
    g, v = state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"]
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight norm over dim 2
    conv = F.conv1d(x.transpose(1, 2), weight, state["encoder.pos_conv.0.bias"], padding=POS // 2, groups=POS_GROUPS)
    conv = conv[:, :, :-1] if POS % 2 == 0 else conv  # SamePad
    x = x + F.gelu(conv).transpose(1, 2)
    ln = lambda t, name: F.layer_norm(t, (DIM,), state[name + ".weight"], state[name + ".bias"])  # noqa: E731
    if not large:
        x = ln(x, "encoder.layer_norm")  # post-norm encoder: LayerNorm *before* the layers
    for n in range(layer):  # tgt_layer = layer - 1: stop after the layer-th layer
        p = f"encoder.layers.{n}."

        def attention(h: torch.Tensor) -> torch.Tensor:
            def proj(name: str) -> torch.Tensor:
                return F.linear(h, state[p + f"self_attn.{name}_proj.weight"], state[p + f"self_attn.{name}_proj.bias"])

            q, k_, v_ = (proj(name).view(1, -1, HEADS, DIM // HEADS).transpose(1, 2) for name in ("q", "k", "v"))
            att = torch.softmax(q @ k_.transpose(-1, -2) / math.sqrt(DIM // HEADS), dim=-1) @ v_
            att = att.transpose(1, 2).reshape(1, -1, DIM)
            return F.linear(att, state[p + "self_attn.out_proj.weight"], state[p + "self_attn.out_proj.bias"])

        def ffn(h: torch.Tensor) -> torch.Tensor:
            h = F.gelu(F.linear(h, state[p + "fc1.weight"], state[p + "fc1.bias"]))
            return F.linear(h, state[p + "fc2.weight"], state[p + "fc2.bias"])

        if large:  # pre-norm
            x = x + attention(ln(x, p + "self_attn_layer_norm"))
            x = x + ffn(ln(x, p + "final_layer_norm"))
        else:  # post-norm
            x = ln(x + attention(x), p + "self_attn_layer_norm")
            x = ln(x + ffn(x), p + "final_layer_norm")
    # Pre-norm encoders apply encoder.layer_norm only when output_layer is None: never here.
    return x[0]


def waves(seed: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [0.2 * torch.randn(n, generator=g) + 0.01 for n in (8000, 5123, 6999)]


# -- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
@pytest.mark.parametrize("style", ["cfg", "args"])
def test_fairseq_layout_equals_reference_forward(tmp_path: Path, large: bool, style: str) -> None:
    path = write_checkpoint(tmp_path / "hubert.pt", large, style)
    state = fairseq_state(large)
    for layer in range(1, LAYERS + 1) if style == "cfg" else (2,):
        extractor = load_hubert(path, layer)
        assert extractor.normalize is large  # task.normalize travels with the checkpoint
        for wav in waves():
            ours, frames = extractor(wav[None], torch.tensor([len(wav)]))
            ref = reference_features(state, wav, layer, large)
            assert int(frames) == (len(wav) - 400) // 320 + 1 == ref.shape[0]
            torch.testing.assert_close(ours[0], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["base", "large"])
def test_matches_real_fairseq_extract_features(name: str) -> None:
    expected = torch.load(DATA / "fairseq_hubert_expected.pt")
    for layer, feats in expected[name]["layers"].items():
        extractor = load_hubert(DATA / f"fairseq_hubert_{name}.pt", layer)
        wavs = [extractor.preprocess(w) for w in expected["wavs"]]
        for wav, ref in zip(wavs, feats):
            ours, _ = extractor(wav[None], torch.tensor([len(wav)]))
            torch.testing.assert_close(ours[0], ref, atol=1e-5, rtol=1e-5)
        # ... and in one padded batch.
        batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        ours, frames = extractor(batch, torch.tensor([len(w) for w in wavs]))
        for row, ref in enumerate(feats):
            assert int(frames[row]) == len(ref)
            torch.testing.assert_close(ours[row, : len(ref)], ref, atol=1e-5, rtol=1e-5)


def test_transformers_hidden_states_correspondence(tmp_path: Path) -> None:
    """Layer L is transformers' hidden_states[L]; for Large, not the (normalised) last_hidden_state."""
    for large in (False, True):
        path = write_checkpoint(tmp_path / f"h{large}.pt", large)
        model, _ = model_from_fairseq(path)
        wav = waves()[0][None]
        out = model(wav, output_hidden_states=True)
        assert len(out.hidden_states) == LAYERS + 1
        for layer in range(1, LAYERS + 1):
            ours = load_hubert(path, layer, normalize=False)(wav, torch.tensor([wav.shape[1]]))[0]
            torch.testing.assert_close(ours, out.hidden_states[layer], atol=1e-5, rtol=1e-5)
        if large:  # fairseq's extract_features(output_layer=12 of 12) skips the final LayerNorm
            assert not torch.allclose(ours, out.last_hidden_state, atol=1e-3)
        else:
            torch.testing.assert_close(ours, out.last_hidden_state, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("large", [False, True], ids=["group-norm", "layer-norm"])
def test_padded_batch_equals_one_by_one(tmp_path: Path, large: bool) -> None:
    extractor = load_hubert(write_checkpoint(tmp_path / "h.pt", large), layer=2)
    wavs = waves(seed=11) + [0.3 * torch.randn(401)]
    lengths = torch.tensor([len(w) for w in wavs])
    batch, frames = extractor(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths)
    for row, wav in enumerate(wavs):
        alone, n = extractor(wav[None], lengths[row : row + 1])
        assert int(frames[row]) == int(n) == alone.shape[1]
        torch.testing.assert_close(batch[row, : int(n)], alone[0], atol=1e-5, rtol=1e-5)
    if not large:
        # Without the masked GroupNorm, padding would leak into the statistics: the test can tell.
        model, _ = model_from_fairseq(tmp_path / "h.pt")
        naive = model(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)).last_hidden_state
        assert not torch.allclose(naive[1, : int(frames[1])], batch[1, : int(frames[1])], atol=1e-3)


def test_hugging_face_folder(tmp_path: Path) -> None:
    model, _ = model_from_fairseq(write_checkpoint(tmp_path / "h.pt", large=False))
    model.save_pretrained(tmp_path / "hf")
    from_folder = load_hubert(tmp_path / "hf", layer=2)
    from_pt = load_hubert(tmp_path / "h.pt", layer=2)
    wav = waves()[1][None]
    n = torch.tensor([wav.shape[1]])
    torch.testing.assert_close(from_folder(wav, n)[0], from_pt(wav, n)[0])


def test_reads_dictconfig_and_fairseq_objects_without_fairseq() -> None:
    ckpt = read_fairseq(DATA / "fairseq_hubert_base.pt")
    assert ckpt["cfg"]["model"]["label_rate"] == 50.0  # "${task.label_rate}" resolved
    assert ckpt["task_state"]["dictionaries"][0]["symbols"][4:6] == ["0", "1"]  # a fairseq Dictionary, as data
    assert ckpt["extra_state"]["previous_training_time"] == 12.5  # a numpy scalar


def test_refuses_code_in_pickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    torch.save({"cfg": {"model": model_cfg(False)}, "model": fairseq_state(False), "extra": Evil()}, tmp_path / "e.pt")
    with pytest.raises(UserError, match="refused to load.*system"):
        load_hubert(tmp_path / "e.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: c["cfg"]["model"].update(_name="wav2vec2"), "'wav2vec2' checkpoint, not a HuBERT"),
        (lambda c: c.pop("cfg"), "no fairseq config"),
        (lambda c: c["model"].pop("encoder.layers.2.fc1.weight"), "missing weights encoder.layers.2.feed_forward"),
        (lambda c: c["model"].update({"quantizer.vars": torch.zeros(1)}), "unexpected weights quantizer.vars"),
        (lambda c: c["model"].update({"post_extract_proj.weight": torch.zeros(3, 3)}), "has shape"),
        (lambda c: c["cfg"]["model"].update(conv_feature_layers="__import__('os')"), "cannot read"),
    ],
)
def test_not_a_hubert_is_refused(tmp_path: Path, mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = write_checkpoint(tmp_path / "h.pt", large=False)
    ckpt = torch.load(path, weights_only=False)
    mutate(ckpt)
    torch.save(ckpt, path)
    with pytest.raises(UserError, match=needle):
        load_hubert(path)


def test_other_bad_checkpoints(tmp_path: Path) -> None:
    torch.save({"dv_kind": "campplus", "model": {"w": torch.zeros(1)}}, tmp_path / "dv.pt")
    with pytest.raises(UserError, match="no fairseq config"):
        load_hubert(tmp_path / "dv.pt")
    with pytest.raises(UserError, match="layer 13 is outside 1..3|--layer 13"):
        load_hubert(write_checkpoint(tmp_path / "h.pt", large=False), layer=13)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "h.pt").read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_hubert(tmp_path / "cut.pt")
    (tmp_path / "w2v").mkdir()
    (tmp_path / "w2v" / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(UserError, match="'wav2vec2' model, not a HuBERT"):
        load_hubert(tmp_path / "w2v")
    with pytest.raises(UserError, match="not found"):
        load_hubert(tmp_path / "nope.pt")


def test_conv_layer_spec_is_parsed_not_evaluated() -> None:
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2")[-1] == (512, 2, 2)
    with pytest.raises(ValueError):
        parse_conv_layers("[(1, 2, 3)] * __import__('os').getpid()")
    assert np.prod([s for _, _, s in parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")]) == 320
