"""Read fairseq checkpoints (HuBERT, mHuBERT) without fairseq installed and without running their code.

A fairseq ``.pt`` is a ``torch.save`` pickle of a dict: ``model`` (the state dict), the config under
``cfg`` (a plain dict in checkpoints written by recent fairseq, an omegaconf ``DictConfig`` in some
older ones) or ``args`` (an ``argparse.Namespace`` in the oldest), and training leftovers:
``task_state`` holding ``fairseq.data.dictionary.Dictionary`` objects, ``extra_state`` with numpy
scalars, optimizer state.

Unpickling those would normally import fairseq and omegaconf and call their classes. Here the file
goes through torch's ``weights_only`` unpickler, which builds tensors and plain containers only, with
an allow-list extended by name:

- ``argparse.Namespace``, numpy scalars and dtypes: real, harmless constructors;
- every ``fairseq.*`` and ``omegaconf.*`` class, ``typing.Any``, ``collections.defaultdict`` and the
  builtin types omegaconf records as type hints: *stand-ins*, inert classes that store the arguments
  and state they are given and run none of the original code. :func:`to_plain` turns the stand-ins
  back into dicts, lists and scalars.

Any other global (``os.system``, ``builtins.eval``, a class from another package...) is refused with
a :class:`~dvcli.errors.UserError` naming it, before anything is built.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvcli.checkpoint import load_checkpoint
from dvcli.errors import path_error

#: Builtin types omegaconf pickles as type hints (``ref_type``, ``object_type``).
_TYPE_HINTS = {
    f"builtins.{name}" for name in ("dict", "list", "tuple", "str", "int", "float", "bool", "bytes", "object")
}
#: Globals that are never more than metadata in a fairseq checkpoint.
_INERT = {"typing.Any", "collections.defaultdict"} | _TYPE_HINTS
#: Packages whose classes become stand-ins (their code never runs).
_STAND_IN_PACKAGES = ("fairseq.", "omegaconf.")


class StandIn:
    """An inert object that replaces a class of fairseq or omegaconf while unpickling.

    Subclasses carry the original's dotted name in ``qualified_name``. Construction stores
    ``args``; pickle's BUILD step stores ``state``. Nothing else happens.
    """

    qualified_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.qualified_name}>"


_stand_ins: dict[str, type[StandIn]] = {}


def _stand_in(name: str) -> type[StandIn]:
    if name not in _stand_ins:
        _stand_ins[name] = type(f"StandIn[{name}]", (StandIn,), {"qualified_name": name})
    return _stand_ins[name]


def _numpy_globals() -> list[tuple[Any, str]]:
    """numpy scalars/dtypes under both their numpy 1 and numpy 2 module paths."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    # np.dtype(...) returns an instance of a per-type class (Float64DType...) that pickle then BUILDs.
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
        *dtype_classes,
    ]


def allowed_globals(path: Path) -> list[Any]:
    """The allow-list for one fairseq file: real plain types plus a stand-in for each fairseq name.

    Raises:
        UserError: the file needs a global that is neither plain data nor fairseq/omegaconf.
    """
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a corrupt file: load_checkpoint below reports it properly
        wanted = []
    allow: list[Any] = [argparse.Namespace, *_numpy_globals()]
    plain = {"argparse.Namespace"} | {
        item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}" for item in allow[1:]
    }
    for name in wanted:
        if name in plain:
            continue
        if name in _INERT or name.startswith(_STAND_IN_PACKAGES):
            allow.append((_stand_in(name), name))
            continue
        raise path_error(
            path,
            f"refused to load: unpickling it would call {name}, which is neither plain data nor part of a "
            "fairseq checkpoint",
            "dv never runs code from checkpoint files; export the model's state dict instead",
        )
    return allow


def read_fairseq(path: str | Path) -> dict[str, Any]:
    """Load a fairseq checkpoint as plain data (dicts, lists, scalars, tensors).

    Returns:
        the checkpoint dict with every config and stand-in converted by :func:`to_plain`.

    Raises:
        UserError: missing, truncated or corrupt file; a file that needs code to unpickle; not a dict.
    """
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as handle:
            magic = handle.read(2)
        # torch.save writes a zip archive (or, before torch 1.6, a pickle stream).
        if magic and magic != b"PK" and magic[:1] != b"\x80":
            raise path_error(path, "is not a PyTorch checkpoint", "pass a fairseq .pt or a Hugging Face folder")
        allow = allowed_globals(path)
    else:
        allow = []  # load_checkpoint says what is wrong with the path
    raw = load_checkpoint(path, allow=allow)
    if not isinstance(raw, dict):
        raise path_error(path, f"holds a {type(raw).__name__}, not a fairseq checkpoint dict")
    return {key: (value if key == "model" else to_plain(value)) for key, value in raw.items()}


def to_plain(obj: Any) -> Any:
    """Turn stand-ins, Namespaces and omegaconf containers into dicts, lists and scalars.

    ``${a.b}`` interpolations left in an omegaconf config are resolved against its root.
    """
    plain = _plain(obj)
    if isinstance(plain, dict):
        return _resolve(plain, plain)
    return plain


def _plain(obj: Any) -> Any:
    if isinstance(obj, StandIn):
        return _plain_stand_in(obj)
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {(_plain(k) if not isinstance(k, str) else k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _plain_stand_in(obj: StandIn) -> Any:
    name = obj.qualified_name
    state = obj.state if isinstance(obj.state, dict) else {}
    if name.startswith("omegaconf.") and name.endswith(("DictConfig", "ListConfig")):
        return _plain(state.get("_content"))
    if name.startswith("omegaconf.nodes."):
        return _plain(state.get("_val"))
    if name in _INERT or name.startswith("omegaconf."):
        return None  # metadata: type hints, flags
    if obj.state is None and len(obj.args) == 1:
        return _plain(obj.args[0])  # an enum member pickled as Enum(value)
    if state:
        return {k: _plain(v) for k, v in state.items()}
    return _plain(obj.state) if obj.state is not None else [_plain(a) for a in obj.args]


_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")


def _resolve(obj: Any, root: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        return {k: _resolve(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, root) for v in obj]
    if isinstance(obj, str):
        match = _INTERPOLATION.match(obj)
        if match:
            node: Any = root
            for part in match[1].split("."):
                if not isinstance(node, dict) or part not in node:
                    return obj
                node = node[part]
            return node
    return obj


# -- the HuBERT part of a fairseq config -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FairseqHubertConfig:
    """The fields of fairseq's ``HubertConfig`` (and task config) that shape inference.

    Defaults are fairseq's, used when a checkpoint's config omits a field.
    """

    extractor_mode: str = "default"  # "default": group norm in the first conv block; "layer_norm": in every block
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False  # True for HuBERT Large/X-Large (pre-norm transformer)
    conv_feature_layers: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    conv_bias: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    conv_pos_batch_norm: bool = False
    layer_type: str = "transformer"
    pos_conv_depth: int = 1
    normalize: bool = False  # task.normalize: layer-norm the waveform first (HuBERT Large/X-Large)
    sample_rate: int = 16000  # task.sample_rate


def parse_conv_layers(spec: str | list | tuple) -> tuple[tuple[int, int, int], ...]:
    """Evaluate fairseq's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``.

    fairseq runs ``eval`` on it; this accepts only list/tuple literals of integers joined by ``+`` and
    ``*`` and raises ``ValueError`` on anything else.
    """
    if not isinstance(spec, str):
        return tuple(tuple(int(v) for v in layer) for layer in spec)  # type: ignore[misc]

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(e) for e in node.elts]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported expression in conv_feature_layers: {ast.dump(node)}")

    layers = value(ast.parse(spec, mode="eval"))
    if not isinstance(layers, list) or not all(isinstance(t, list) and len(t) == 3 for t in layers):
        raise ValueError(f"conv_feature_layers is not a list of (dim, kernel, stride): {spec}")
    return tuple(tuple(int(v) for v in t) for t in layers)  # type: ignore[misc]


def hubert_config(checkpoint: Mapping[str, Any], path: Path) -> tuple[FairseqHubertConfig, str]:
    """Find the model and task config in a plain fairseq checkpoint and check it is a HuBERT.

    Returns:
        the config and the state-dict key prefix of the HuBERT weights (``""``, or
        ``"w2v_encoder.w2v_model."`` in a fine-tuned ``hubert_ctc`` checkpoint).

    Raises:
        UserError: no config, or the config describes another model (wav2vec 2.0, a conformer...).
    """
    model_cfg, task_cfg, name = _find_configs(checkpoint, path)
    prefix = ""
    if name in ("hubert_ctc", "hubert_seq2seq"):
        inner = model_cfg.get("w2v_args") or {}
        if not isinstance(inner, dict) or not isinstance(inner.get("model"), dict):
            raise path_error(path, f"is a fine-tuned '{name}' checkpoint without its pretraining config (w2v_args)")
        model_cfg, task_cfg = inner["model"], inner.get("task") or task_cfg
        name = str(model_cfg.get("_name", "hubert"))
        prefix = "w2v_encoder.w2v_model."
    if name != "hubert":
        raise path_error(path, f"is a fairseq '{name}' checkpoint, not a HuBERT", "pass a HuBERT or mHuBERT .pt")
    defaults = FairseqHubertConfig()
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(FairseqHubertConfig):
        source = task_cfg if f.name in ("normalize", "sample_rate") else model_cfg
        raw = source.get(f.name) if isinstance(source, dict) else None
        fields[f.name] = getattr(defaults, f.name) if raw is None else raw
    try:
        fields["conv_feature_layers"] = parse_conv_layers(fields["conv_feature_layers"])
        for key in (
            "encoder_layers",
            "encoder_embed_dim",
            "encoder_ffn_embed_dim",
            "encoder_attention_heads",
            "conv_pos",
            "conv_pos_groups",
            "pos_conv_depth",
            "sample_rate",
        ):
            fields[key] = int(fields[key])
        for key in ("layer_norm_first", "conv_bias", "conv_pos_batch_norm", "normalize"):
            fields[key] = bool(fields[key])
    except (ValueError, TypeError, SyntaxError) as err:
        raise path_error(path, f"has a HuBERT config dv cannot read ({err})") from None
    cfg = FairseqHubertConfig(**fields)
    if cfg.layer_type != "transformer" or cfg.pos_conv_depth != 1:
        raise path_error(
            path,
            f"is a HuBERT variant dv does not support (layer_type={cfg.layer_type}, "
            f"pos_conv_depth={cfg.pos_conv_depth})",
        )
    if cfg.extractor_mode not in ("default", "layer_norm"):
        raise path_error(path, f"has an unknown extractor_mode '{cfg.extractor_mode}'")
    return cfg, prefix


def _find_configs(checkpoint: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        model_cfg = cfg["model"]
        return model_cfg, cfg.get("task") or {}, str(model_cfg.get("_name", ""))
    args = checkpoint.get("args")
    if isinstance(args, dict):
        # Old checkpoints: one flat Namespace for model and task; `arch` names the model.
        arch = str(args.get("arch", ""))
        name = "hubert_ctc" if arch.startswith("hubert_ctc") else "hubert" if arch.startswith("hubert") else arch
        if name == "hubert_ctc" and "w2v_args" in args and isinstance(args["w2v_args"], dict):
            inner = args["w2v_args"]
            args = dict(args, w2v_args={"model": inner, "task": inner})
        return args, args, name
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        raise path_error(path, "has weights but no fairseq config ('cfg' or 'args')", "is it a fairseq checkpoint?")
    raise path_error(path, "is not a fairseq checkpoint (no 'model' weights and no 'cfg'/'args' config)")
