"""Probes of what representations carry (the seed analysis's open questions), with scikit-learn classifiers.

- **Noise separability** (the paper's argument for HuBERT units as content: do they carry the
  recording's noise?): utterance-pooled content features (mean and standard deviation over frames)
  of clean utterances and of the same utterances mixed with noise; a logistic regression tells clean
  from noisy, trained *leave one noise type out* (it never saw the held-out type) on one half of the
  utterances and scored on the other half: F1 of "noisy" per held-out type. High F1 = the features
  expose noise even of an unseen kind.
- **Style**: a logistic regression on speaker embeddings predicting a manifest label (emotion for
  CREMA-D), cross-validated with speaker-independent folds (``GroupKFold`` by speaker: a test
  speaker never appears in training); accuracy with its 95% Wilson interval, beside the majority-class
  rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from dvcli.audio import audio_files
from dvcli.augment.noises import colored_noise as augment_noise
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource

#: Noise types dv makes itself when no noise folder is given.
BUILT_IN_NOISES = ("white", "pink", "brown")


def colored_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of white, pink (1/f power) or brown (1/f^2 power) noise, unit variance.

    The training augmenter's generator (:func:`dvcli.augment.noises.colored_noise`), seeded from ``rng``.
    """
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
    x = augment_noise(1, length, exponent, gen, torch.device("cpu"))[0].numpy()
    return x / (x.std() + 1e-12)  # unit variance (the augmenter leaves white noise as drawn)


class NoiseTypes:
    """Noise types: the subfolders of ``folder`` (one type each, its audio files), else :data:`BUILT_IN_NOISES`.

    Raises:
        UserError: a folder with fewer than two non-empty subfolders (leave-one-out needs two types).
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.sources: dict[str, NoiseSource] = {}  # one per subfolder: dv's evaluation noise (clip choice, cache)
        if folder is not None:
            folder = Path(folder)
            if not folder.is_dir():
                raise UserError(f"{folder}: noise folder not found (give a folder with one subfolder per noise type)")
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                if audio_files(sub):
                    self.sources[sub.name] = NoiseSource(sub)
            if len(self.sources) < 2:
                raise UserError(
                    f"{folder}: needs at least two subfolders of noise clips, one per noise type "
                    f"(found {sorted(self.sources) or 'none'})"
                )
        self.names = list(self.sources) or list(BUILT_IN_NOISES)

    def sample(self, name: str, length: int, rng: np.random.Generator) -> np.ndarray:
        """A noise signal of type ``name`` (a whole clip of the type's folder, or ``length`` generated samples)."""
        if not self.sources:
            return colored_noise(name, length, rng)
        return self.sources[name].sample(length, rng)


def pool(frames: np.ndarray) -> np.ndarray:
    """``(F, D)`` frame features -> ``(2D,)``: their mean and standard deviation over frames."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)]).astype(np.float64)


def _classifier() -> object:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))


def leave_one_noise_out(
    clean: np.ndarray, noisy: Mapping[str, np.ndarray], train: np.ndarray
) -> dict[str, dict[str, float]]:
    """F1 of "noisy" per held-out noise type.

    Args:
        clean: ``(N, D)`` pooled features of the clean utterances.
        noisy: noise type -> ``(N, D)`` the same utterances with that noise.
        train: ``(N,)`` bool, the utterances to train on (the others are scored).

    Returns:
        type -> ``{"f1", "precision", "recall", "n_test"}`` for the classifier trained on every other type.
    """
    from sklearn.metrics import f1_score, precision_score, recall_score

    test = ~train
    results = {}
    for held in noisy:
        x = np.concatenate([clean[train]] + [noisy[t][train] for t in noisy if t != held])
        y = np.concatenate([np.zeros(int(train.sum()))] + [np.ones(int(train.sum())) for t in noisy if t != held])
        model = _classifier()
        model.fit(x, y)
        x_test = np.concatenate([clean[test], noisy[held][test]])
        y_test = np.concatenate([np.zeros(int(test.sum())), np.ones(int(test.sum()))])
        predicted = model.predict(x_test)
        results[held] = {
            "f1": float(f1_score(y_test, predicted, zero_division=0)),
            "precision": float(precision_score(y_test, predicted, zero_division=0)),
            "recall": float(recall_score(y_test, predicted, zero_division=0)),
            "n_test": int(len(y_test)),
        }
    return results


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``successes / n`` (Wilson 1927)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def style_accuracy(embeddings: np.ndarray, labels: Sequence[str], speakers: Sequence[str], folds: int = 5) -> dict:
    """Speaker-independent cross-validated accuracy of predicting ``labels`` from ``embeddings`` ``(N, D)``.

    Returns ``{"accuracy", "ci95": [low, high], "chance", "n", "folds", "labels"}``; ``chance`` is the
    majority label's share.

    Raises:
        ValueError: fewer than two speakers or two labels, or a fold whose training side has one label.
    """
    from sklearn.model_selection import GroupKFold

    y = np.asarray(labels)
    groups = np.asarray(speakers)
    classes = sorted(set(y.tolist()))
    k = min(folds, len(set(groups.tolist())))
    if k < 2 or len(classes) < 2:
        raise ValueError("the style probe needs at least two speakers and two labels")
    predicted = np.empty_like(y)
    for train, test in GroupKFold(n_splits=k).split(embeddings, y, groups):
        if len(set(y[train].tolist())) < 2:
            raise ValueError(
                "a fold's training speakers all have one label: the label follows the speaker, so a "
                "speaker-independent probe cannot measure it (give several labels per speaker)"
            )
        model = _classifier()
        model.fit(embeddings[train], y[train])
        predicted[test] = model.predict(embeddings[test])
    correct = int((predicted == y).sum())
    low, high = wilson_interval(correct, len(y))
    counts = [int((y == c).sum()) for c in classes]
    return {
        "accuracy": correct / len(y),
        "ci95": [low, high],
        "chance": max(counts) / len(y),
        "n": int(len(y)),
        "folds": k,
        "labels": dict(zip(classes, counts)),
    }
