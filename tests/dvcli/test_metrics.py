"""EER, minDCF, edit distance and confidence intervals against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from dvcli.metrics import edit_distance, eer, error_rate, mean_ci95, min_dcf, t_quantile_975


def _brute_force_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Scan every threshold; the EER lies between the FRR and FAR where they are closest."""
    best = (2.0, 0.0)
    for t in np.concatenate([[-np.inf], np.sort(scores), [np.inf]]):
        frr = np.mean(scores[labels == 1] < t)
        far = np.mean(scores[labels == 0] >= t)
        if abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    return best[1]


def test_eer_separable_and_random() -> None:
    assert eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])[0] == 0.0
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    scores = rng.standard_normal(4000) + 1.5 * labels
    rate, threshold = eer(scores, labels)
    # Two unit Gaussians 1.5 apart cross at 0.75: EER = Phi(-0.75) = 0.2266.
    assert rate == pytest.approx(0.2266, abs=0.015)
    assert rate == pytest.approx(_brute_force_eer(scores, labels), abs=2e-3)
    assert 0.5 < threshold < 1.0


def test_min_dcf_bounds() -> None:
    assert min_dcf([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    assert 0.0 < min_dcf(rng.standard_normal(2000), labels) <= 1.0  # accepting none costs 1


def test_eer_needs_both_kinds_of_trials() -> None:
    with pytest.raises(ValueError):
        eer([0.1, 0.2], [1, 1])


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    assert error_rate([[1, 2, 3, 4]], [[1, 3, 4, 5]]) == pytest.approx(0.5)


def test_t_quantiles_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in [1, 2, 3, 4, 5, 10, 30, 200]:
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1.5e-3)


def test_mean_ci95() -> None:
    mean, half = mean_ci95([4.0, 5.0, 3.0, 4.0])
    # std = 0.8165, t(3) = 3.182 -> half-width = 3.182 * 0.8165 / 2 = 1.299
    assert mean == 4.0 and half == pytest.approx(1.299, abs=5e-3)
    assert mean_ci95([2.0]) == (2.0, 0.0)
