"""HuBERT features with ``transformers.HubertModel``, from a Hugging Face folder or a fairseq ``.pt``.

The output of ``--layer L`` equals fairseq's
``HubertModel.extract_features(source, padding_mask=None, mask=False, output_layer=L)``:

- fairseq runs the conv feature extractor, ``layer_norm`` + ``post_extract_proj`` (= transformers'
  ``feature_projection``), then its ``TransformerEncoder`` with ``tgt_layer = L - 1``: positional
  conv added, then -- for HuBERT Base (``layer_norm_first=False``) -- ``encoder.layer_norm`` *before*
  the layers, then layers ``0 .. L-1``, stopping after layer index ``L - 1``. So the result is the
  output of the L-th layer (1-based), which is transformers' ``hidden_states[L]`` for Base
  (``hidden_states[0]`` being the input of layer 1, after projection, positional conv and layer norm).
- For HuBERT Large/X-Large (``layer_norm_first=True``) the encoder's ``layer_norm`` is applied after
  the last layer, and fairseq applies it only when ``output_layer`` is None. Any ``output_layer``,
  even the last, returns the *un-normalised* output of layer L: transformers' ``hidden_states[L]``
  (transformers 5 records layer outputs), never its ``last_hidden_state``, which
  ``HubertEncoderStableLayerNorm`` normalises; so that LayerNorm is replaced by an identity here.

dv runs only the first L layers (the rest would be thrown away), which halves the cost at layer 6
of 12.

Padded batches give the same features as one-by-one calls: the first conv block's GroupNorm
(HuBERT Base) normalises each channel over time, so it is computed over each item's real samples
only; padded frames are zeroed before the positional conv and masked out of attention.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import path_error
from dvcli.features.fairseq import FairseqHubertConfig, hubert_config, read_fairseq

log = logging.getLogger(__name__)

#: fairseq parameters that only serve pretraining (the prediction heads and the mask embedding).
_TRAINING_ONLY = re.compile(r"^(label_embs_concat|label_embs|final_proj\.|mask_emb|target_glu\.)")


def hf_config(cfg: FairseqHubertConfig) -> Any:
    """The ``transformers.HubertConfig`` of a fairseq HuBERT config."""
    from transformers import HubertConfig

    dims, kernels, strides = zip(*cfg.conv_feature_layers)
    return HubertConfig(
        hidden_size=cfg.encoder_embed_dim,
        num_hidden_layers=cfg.encoder_layers,
        num_attention_heads=cfg.encoder_attention_heads,
        intermediate_size=cfg.encoder_ffn_embed_dim,
        hidden_act=cfg.activation_fn,
        feat_extract_norm="group" if cfg.extractor_mode == "default" else "layer",
        feat_extract_activation="gelu",
        conv_dim=list(dims),
        conv_kernel=list(kernels),
        conv_stride=list(strides),
        conv_bias=cfg.conv_bias,
        num_conv_pos_embeddings=cfg.conv_pos,
        num_conv_pos_embedding_groups=cfg.conv_pos_groups,
        conv_pos_batch_norm=cfg.conv_pos_batch_norm,
        do_stable_layer_norm=cfg.layer_norm_first,
        feat_proj_layer_norm=True,
        layer_norm_eps=1e-5,  # fairseq's LayerNorm default
        mask_time_prob=0.0,  # inference only: no mask embedding
        layerdrop=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
    )


def fairseq_key(name: str, cfg: FairseqHubertConfig, weight_norm_keys: tuple[str, str]) -> str | None:
    """The transformers ``HubertModel`` key of a fairseq HuBERT key (None for training-only weights).

    Raises:
        KeyError: a key that belongs to no HuBERT.
    """
    if _TRAINING_ONLY.match(name):
        return None
    rules: list[tuple[str, str]] = [
        (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
        (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
        (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
        (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
        (
            r"encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)",
            r"encoder.layers.\1.attention.\2_proj.\3",
        ),
        (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
        (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
        (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
        (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    ]
    if cfg.extractor_mode == "default":
        # Group norm in the first block only: Sequential(conv, dropout, GroupNorm, GELU).
        rules.append(
            (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1")
        )
    else:
        # Sequential(conv, dropout, Sequential(TransposeLast, LayerNorm, TransposeLast), GELU) in every block.
        rules.append(
            (
                r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
                r"feature_extractor.conv_layers.\1.layer_norm.\2",
            )
        )
    if cfg.conv_pos_batch_norm:
        rules += [
            (
                r"encoder\.pos_conv\.0\.(weight|bias|running_mean|running_var|num_batches_tracked)",
                r"encoder.pos_conv_embed.batch_norm.\1",
            ),
            (r"encoder\.pos_conv\.1\.(weight|bias)", r"encoder.pos_conv_embed.conv.\1"),
        ]
    else:
        # Weight norm over dim 2: g is (1, 1, kernel). Old torch names weight_g/weight_v, new torch
        # names parametrizations.weight.original0/1; map to whichever the transformers model uses.
        g, v = weight_norm_keys
        rules += [
            (r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)", g),
            (r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)", v),
            (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
        ]
    for pattern, replacement in rules:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    raise KeyError(name)


def model_from_fairseq(path: str | Path) -> tuple[nn.Module, FairseqHubertConfig]:
    """Build a ``transformers.HubertModel`` holding a fairseq checkpoint's weights (fairseq not needed).

    Raises:
        UserError: unreadable file, not a HuBERT, or weights that do not fit the config.
    """
    from transformers import HubertModel

    path = Path(path)
    checkpoint = read_fairseq(path)
    cfg, prefix = hubert_config(checkpoint, path)
    state = checkpoint.get("model")
    if not isinstance(state, dict) or not state:
        raise path_error(path, "has a HuBERT config but no 'model' weights")
    model = HubertModel(hf_config(cfg))
    ours = model.state_dict()
    if "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in ours:
        weight_norm = (
            "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
            "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        )
    else:
        weight_norm = ("encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v")
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in state.items():
        if not name.startswith(prefix):
            continue  # a fine-tuned model's head (w2v_encoder.proj) is not part of the features
        try:
            key = fairseq_key(name[len(prefix) :], cfg, weight_norm)
        except KeyError:
            unknown.append(name)
            continue
        if key is not None:
            converted[key] = tensor
    if (
        "feature_projection.projection.weight" not in converted
        and cfg.conv_feature_layers[-1][0] == cfg.encoder_embed_dim
    ):
        # fairseq has no post_extract_proj when the conv and encoder widths match: an identity.
        converted["feature_projection.projection.weight"] = torch.eye(cfg.encoder_embed_dim)
        converted["feature_projection.projection.bias"] = torch.zeros(cfg.encoder_embed_dim)
    missing = sorted(set(ours) - set(converted))
    if unknown or missing:
        detail = (
            f"unexpected weights {', '.join(unknown[:3])}" if unknown else f"missing weights {', '.join(missing[:3])}"
        )
        raise path_error(path, f"does not have HuBERT's layout ({detail})", "is it a HuBERT checkpoint?")
    for key, tensor in converted.items():
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise path_error(
                path,
                f"weight {key} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(ours[key].shape)} (a damaged or edited checkpoint?)",
            )
    model.load_state_dict(converted, strict=True)
    return model.eval(), cfg


def model_from_folder(folder: str | Path) -> tuple[nn.Module, bool]:
    """Load a Hugging Face HuBERT folder (``config.json`` + weights); returns (model, do_normalize).

    Raises:
        UserError: no config, a config of another model type, or unreadable weights.
    """
    from transformers import HubertModel

    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise path_error(folder, "has no config.json", "pass a Hugging Face model folder or a fairseq .pt")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise path_error(config_file, "is not valid JSON") from None
    if model_type != "hubert":
        raise path_error(folder, f"holds a '{model_type}' model, not a HuBERT")
    try:
        model = HubertModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise path_error(folder, f"could not load the HuBERT weights ({first})") from None
    normalize = False
    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.is_file():
        try:
            normalize = bool(json.loads(preprocessor.read_text(encoding="utf-8")).get("do_normalize", False))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise path_error(preprocessor, "is not valid JSON") from None
    return model.eval(), normalize


def masked_group_norm(x: torch.Tensor, frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``nn.GroupNorm`` with one group per channel, statistics over each item's first ``frames`` steps.

    Args:
        x: ``(B, C, T)`` conv output; frames: ``(B,)`` valid steps per item.

    Returns:
        ``(B, C, T)``: ``norm(x[b:b+1, :, :frames[b]])`` on each item's valid steps, computed in float32
        (as fairseq's ``Fp32GroupNorm``); the padded steps are left unnormalised (garbage, like every
        padded frame downstream).

    One ``F.group_norm`` call per item that has padding, one for the whole batch when none has:
    PyTorch's fused kernel is about 40x faster than masked sums over the padded tensor.
    """
    if norm.num_groups != norm.num_channels:
        raise ValueError("masked_group_norm supports one group per channel (HuBERT's first conv block)")
    dtype = x.dtype
    weight, bias = norm.weight.float(), norm.bias.float()
    lengths = frames.tolist()
    if all(n == x.shape[-1] for n in lengths):
        return F.group_norm(x.float(), norm.num_groups, weight, bias, norm.eps).to(dtype)
    out = x.float().clone()
    for b, n in enumerate(lengths):
        if n > 0:
            out[b : b + 1, :, :n] = F.group_norm(out[b : b + 1, :, :n], norm.num_groups, weight, bias, norm.eps)
    return out.to(dtype)


class HubertFeatures(nn.Module):
    """Layer ``layer`` of a HuBERT, on padded batches, equal to fairseq's ``extract_features``.

    Args:
        model: a ``transformers.HubertModel`` (it is truncated to ``layer`` layers in place).
        layer: 1-based transformer layer (fairseq's ``output_layer``); 0 = the encoder input.
        normalize: layer-normalise each waveform first (fairseq ``task.normalize``; HuBERT Large).
        source: the checkpoint path, for ``describe``.
    """

    kind = "hubert"

    def __init__(self, model: nn.Module, layer: int, *, normalize: bool = False, source: str = "") -> None:
        super().__init__()
        config = model.config
        if not 0 <= layer <= config.num_hidden_layers:
            raise ValueError(f"layer {layer} outside 0..{config.num_hidden_layers}")
        model.encoder.layers = model.encoder.layers[:layer]
        if config.do_stable_layer_norm:
            # fairseq applies the final LayerNorm of a pre-norm encoder only to the full stack's output
            # when no output_layer is asked; extract_features(output_layer=L) never applies it.
            model.encoder.layer_norm = nn.Identity()
        self.model = model.eval()
        self.layer = layer
        self.normalize = normalize
        self.source = source
        self.dim = int(config.hidden_size)
        self.sample_rate = SAMPLE_RATE
        self.strides = list(config.conv_stride)
        self.kernels = list(config.conv_kernel)
        self.frame_rate = self.sample_rate / math.prod(self.strides)

    def describe(self) -> dict[str, Any]:
        """Fields for ``meta.json``."""
        return {
            "kind": self.kind,
            "checkpoint": self.source,
            "layer": self.layer,
            "normalize": self.normalize,
            "dim": self.dim,
            "frame_rate": self.frame_rate,
        }

    def num_frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames the conv stack makes of ``samples`` samples (``(B,)`` long)."""
        frames = samples
        for kernel, stride in zip(self.kernels, self.strides):
            frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
        return frames.clamp(min=0)

    def preprocess(self, wav: torch.Tensor) -> torch.Tensor:
        """fairseq's ``F.layer_norm(wav, wav.shape)`` for models trained with ``normalize=True``."""
        return F.layer_norm(wav, wav.shape) if self.normalize else wav

    @torch.inference_mode()
    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a zero-padded batch.

        Args:
            wavs: ``(B, T)`` float waveforms at 16 kHz, zero-padded on the right.
            lengths: ``(B,)`` samples per item.

        Returns:
            ``(B, F, dim)`` features (padded frames are garbage) and ``(B,)`` valid frames per item.
        """
        model = self.model
        lengths = lengths.to(wavs.device)
        x = wavs[:, None]  # (B, 1, T)
        steps = lengths
        for conv_layer in model.feature_extractor.conv_layers:
            steps = (
                torch.div(steps - conv_layer.conv.kernel_size[0], conv_layer.conv.stride[0], rounding_mode="floor") + 1
            )
            norm = getattr(conv_layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                x = conv_layer.activation(masked_group_norm(conv_layer.conv(x), steps, norm))
            else:
                x = conv_layer(x)  # no norm, or a LayerNorm over channels (per step: padding-safe)
        frames = steps.clamp(min=0)
        hidden = model.feature_projection(x.transpose(1, 2))  # (B, F, C) -> (B, F, D)
        if isinstance(hidden, tuple):  # older transformers return (hidden, normed input)
            hidden = hidden[0]
        mask = None
        if bool((frames < hidden.shape[1]).any()):
            mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]  # (B, F)
        out = model.encoder(hidden, attention_mask=mask)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0], frames


def load_hubert(path: str | Path, layer: int = 6, *, normalize: bool | None = None) -> HubertFeatures:
    """Load HuBERT features from a Hugging Face folder or a fairseq ``.pt``.

    Args:
        path: a model folder (``config.json`` + weights) or a fairseq checkpoint file.
        layer: 1-based layer (fairseq's ``output_layer``).
        normalize: override the checkpoint's waveform normalisation (None = as the checkpoint says).

    Raises:
        UserError: missing path, not a HuBERT, unreadable weights, a layer the model does not have.
    """
    path = Path(path)
    if not path.exists():
        raise path_error(path, "HuBERT checkpoint not found", "pass a fairseq .pt or a Hugging Face model folder")
    if path.is_dir():
        model, default_normalize = model_from_folder(path)
    else:
        model, cfg = model_from_fairseq(path)
        default_normalize = cfg.normalize
        if cfg.sample_rate != SAMPLE_RATE:
            raise path_error(path, f"was trained on {cfg.sample_rate} Hz audio; dv's HuBERT path reads 16 kHz")
    layers = model.config.num_hidden_layers
    if not 1 <= layer <= layers:
        raise path_error(path, f"has {layers} transformer layers; --layer {layer} is outside 1..{layers}")
    if tuple(model.config.conv_stride) and math.prod(model.config.conv_stride) != 320:
        log.warning(
            "%s: conv stride %d, not 320: frames will not be at 50 Hz", path, math.prod(model.config.conv_stride)
        )
    return HubertFeatures(
        model, layer, normalize=default_normalize if normalize is None else normalize, source=str(path.resolve())
    )
