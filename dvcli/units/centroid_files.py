"""k-means models from files: ``dv cluster`` folders, ``.npy`` centroids, scikit-learn ``km.bin``
(fairseq's and textlesslib's), read without running code from the pickle; and the check that
centroids fit the features they label."""

from __future__ import annotations

import io
import json
import logging
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from dvcli.errors import path_error

log = logging.getLogger(__name__)


def load_centroids(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Centroids from a ``dv cluster`` folder, a ``.npy`` file or a scikit-learn ``km.bin`` (joblib).

    Returns:
        ``(k, D)`` float32 centroids and what is known about the features they were fitted on
        (``meta.json`` of a dv folder; empty otherwise).

    Raises:
        UserError: missing or unreadable file, not a k-means model.
    """

    path = Path(path)
    if path.is_dir():
        file = path / "centroids.npy"
        if not file.is_file():
            raise path_error(path, "has no centroids.npy: not a `dv cluster` output")
        meta: dict[str, Any] = {}
        if (path / "meta.json").is_file():
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        return _read_npy(file), meta.get("features", {}) if isinstance(meta.get("features"), dict) else {}
    if not path.is_file():
        raise path_error(path, "k-means model not found", "pass a `dv cluster` folder, a .npy or a km.bin")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic == b"\x93NUMPY":
        return _read_npy(path), {}
    return read_sklearn_kmeans(path), {}


def check_same_features(path: str | Path, trained_on: dict[str, Any], features: dict[str, Any]) -> None:
    """Refuse centroids fitted on another feature kind or layer, when the k-means folder records them.

    Raises:
        UserError: the kinds or layers differ.
    """
    for key in ("kind", "layer"):
        if trained_on.get(key) is not None and trained_on.get(key) != features.get(key):
            raise path_error(
                path,
                f"was fitted on {key}={trained_on[key]} features, these are {key}={features.get(key)}",
                "extract the features the k-means model expects",
            )


def _read_npy(path: Path) -> np.ndarray:
    try:
        centroids = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise path_error(path, f"is not a readable .npy array ({err})") from None
    if centroids.ndim != 2 or not np.issubdtype(centroids.dtype, np.floating):
        raise path_error(path, f"holds a {centroids.dtype} array of shape {centroids.shape}, expected (k, dim) floats")
    return np.ascontiguousarray(centroids, dtype=np.float32)


class _EstimatorState:
    """Stands in for a scikit-learn estimator while unpickling: keeps its attributes, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state if isinstance(state, dict) else {}


class _Inert:
    """Stands in for numpy random-state objects an estimator may carry; ignores everything."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


_SKLEARN_MODULES = ("sklearn.cluster._kmeans", "sklearn.cluster.k_means_", "sklearn.cluster._k_means")
_INERT_GLOBALS = {
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("numpy.random._mt19937", "MT19937"),
}


class _Refused(pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list."""


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 pickles), limited to the stand-ins above."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    if not (isinstance(cls, type) and issubclass(cls, (_EstimatorState, _Inert, NumpyArrayWrapper))):
        raise _Refused(f"{cls!r} rebuilt by copyreg")
    return cls.__new__(cls)


def _numpy_names() -> dict[tuple[str, str], Any]:
    core = getattr(np, "_core", None) or np.core
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[(module, "_reconstruct")] = core.multiarray._reconstruct
        names[(module, "scalar")] = core.multiarray.scalar
    for name in dir(np.dtypes):
        if name.endswith("DType"):
            names[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return names


def read_sklearn_kmeans(path: str | Path) -> np.ndarray:
    """``cluster_centers_`` of a joblib-pickled scikit-learn (MiniBatch)KMeans, as fairseq/textlesslib save.

    joblib pickles can run code, so they are read with an unpickler that builds only numpy arrays
    and scalars, plus inert stand-ins for the estimator and its random state; any other global is
    refused. Arrays of Python objects are refused too.

    Raises:
        UserError: not a joblib k-means pickle, or one that would need anything else.
    """
    path = Path(path)
    try:
        from joblib import numpy_pickle as jp
    except ImportError:
        raise path_error(path, "reading a scikit-learn km.bin needs joblib", "pip install joblib") from None
    allowed = _numpy_names()
    allowed[("joblib.numpy_pickle", "NumpyArrayWrapper")] = jp.NumpyArrayWrapper
    for module in ("copyreg", "copy_reg"):  # protocol 0/1 pickles (Python 2 module name too)
        allowed[(module, "_reconstructor")] = _safe_reconstructor
    for module in ("builtins", "__builtin__"):
        allowed[(module, "object")] = object  # only ever an argument of _safe_reconstructor

    class SafeUnpickler(jp.NumpyUnpickler):  # type: ignore[misc, name-defined]
        dispatch = jp.NumpyUnpickler.dispatch.copy()

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in allowed:
                return allowed[(module, name)]
            if module in _SKLEARN_MODULES and name in ("MiniBatchKMeans", "KMeans"):
                return _EstimatorState
            if (module, name) in _INERT_GLOBALS:
                return _Inert
            raise _Refused(f"{module}.{name}")

        def load_build(self) -> None:
            wrapper = self.stack[-2] if len(self.stack) > 1 else None
            if isinstance(wrapper, jp.NumpyArrayWrapper):
                state = self.stack[-1]
                dtype = state.get("dtype") if isinstance(state, dict) else None
                if dtype is None or not isinstance(dtype, np.dtype) or dtype.hasobject:
                    raise _Refused("a numpy array of Python objects")
            jp.NumpyUnpickler.load_build(self)

        dispatch[pickle.BUILD[0]] = load_build

    try:
        with open(path, "rb") as raw:
            data = raw.read()
        obj = SafeUnpickler(str(path), _decompressed(data, path), ensure_native_byte_order=True).load()
    except _Refused as err:
        raise path_error(
            path,
            f"refused to load: it needs {err}, which is not part of a k-means model",
            "dv never runs code from pickles; save the centroids with numpy.save instead",
        ) from None
    except (
        pickle.UnpicklingError,
        struct.error,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OSError,
    ) as err:
        raise path_error(path, f"is not a readable joblib k-means file ({type(err).__name__}: {err})") from None
    state = obj.state if isinstance(obj, _EstimatorState) else None
    centres = state.get("cluster_centers_") if state else None
    if not isinstance(centres, np.ndarray) or centres.ndim != 2 or not np.issubdtype(centres.dtype, np.floating):
        raise path_error(path, "is not a fitted scikit-learn KMeans/MiniBatchKMeans (no cluster_centers_)")
    return np.ascontiguousarray(centres, dtype=np.float32)


def _decompressed(data: bytes, path: Path) -> io.BytesIO:
    """joblib's optional compressions (fairseq writes uncompressed files)."""
    import bz2
    import gzip
    import lzma
    import zlib

    if data[:1] == b"x":  # joblib's zlib
        return io.BytesIO(zlib.decompress(data))
    if data[:2] == b"\x1f\x8b":
        return io.BytesIO(gzip.decompress(data))
    if data[:3] == b"BZh":
        return io.BytesIO(bz2.decompress(data))
    if data[:6] == b"\xfd7zXZ\x00":
        return io.BytesIO(lzma.decompress(data))
    return io.BytesIO(data)
