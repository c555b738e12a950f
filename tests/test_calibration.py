"""Calibration metrics, temperature scaling and abstention on synthetic sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from serkit.calibration import (
    UNCERTAIN,
    apply_temperature,
    brier,
    check_min_confidence,
    coverage_table,
    ece,
    fit_temperature,
    nll,
    reliability,
    summary,
    top_label,
)
from serkit.errors import ConfigError


def _calibrated(n=60000, k=4, seed=0):
    """Rows whose top probability c is right with probability c (perfectly calibrated by construction)."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(1 / k + 0.01, 1.0, n)
    top = rng.integers(0, k, n)
    p = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
    p[np.arange(n), top] = conf
    right = rng.random(n) < conf
    other = (top + rng.integers(1, k, n)) % k
    y = np.where(right, top, other)
    return p, y


def _overconfident(t_true=2.5, n=20000, k=5, seed=1):
    """Labels drawn from softmax(z); the model reports softmax(z * t_true) (over-confident by t_true)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (p_true.cumsum(1) > rng.random(n)[:, None]).argmax(1)
    zo = z * t_true
    return np.exp(zo) / np.exp(zo).sum(1, keepdims=True), y


def test_calibrated_set_has_ece_near_zero():
    p, y = _calibrated()
    assert ece(p, y) < 0.01


def test_always_wrong_with_full_confidence_has_ece_one():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ece(p, [1, 0]) == pytest.approx(1.0)
    assert ece(p, [0, 1]) == pytest.approx(0.0)


def test_temperature_recovers_the_true_temperature_and_lowers_nll():
    p, y = _overconfident(2.5)
    t = fit_temperature(p, y)
    assert t == pytest.approx(2.5, rel=0.06)
    q = apply_temperature(p, t)
    assert nll(q, y) < nll(p, y) - 0.1
    assert ece(q, y) < 0.5 * ece(p, y)
    assert (q.argmax(1) == p.argmax(1)).all()  # the predicted label never changes


def test_temperature_from_logits_equals_temperature_from_probs():
    p, y = _overconfident(2.0, n=3000)
    assert fit_temperature(np.log(p) + 7.0, y) == pytest.approx(fit_temperature(p, y), rel=1e-3)


def test_temperature_one_is_the_identity():
    p, _ = _calibrated(n=100)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-12)


def test_zero_probability_stays_zero():
    p = np.array([[0.7, 0.3, 0.0]])
    q = apply_temperature(p, 3.0)
    assert q[0, 2] == 0.0 and q.sum() == pytest.approx(1.0)


def test_bad_temperature_is_a_config_error():
    with pytest.raises(ConfigError, match="positive"):
        apply_temperature(np.eye(2), 0.0)


def test_brier_and_nll_hand_computed():
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]])
    y = [0, 2]
    # row 1: .3^2+.2^2+.1^2 = .14; row 2: .4^2+.4^2+.8^2 = .96
    assert brier(p, y) == pytest.approx((0.14 + 0.96) / 2)
    assert nll(p, y) == pytest.approx(-(np.log(0.7) + np.log(0.2)) / 2)


def test_reliability_bins():
    p = np.array([[0.95, 0.05], [0.55, 0.45], [0.52, 0.48]])
    conf, acc, count = reliability(p, [0, 1, 0], n_bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 1]
    assert conf[5] == pytest.approx(0.535) and acc[5] == pytest.approx(0.5)
    assert acc[9] == 1.0 and np.isnan(acc[0])


def test_coverage_table():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.45, 0.55], [0.2, 0.8]])
    y = [0, 1, 1, 1]
    rows = {r["min_confidence"]: r for r in coverage_table(p, y, thresholds=(0.5, 0.7, 0.95))}
    assert rows[0.5]["coverage"] == 1.0 and rows[0.5]["accuracy"] == 0.75
    assert rows[0.7]["coverage"] == 0.5 and rows[0.7]["n"] == 2 and rows[0.7]["accuracy"] == 1.0
    assert rows[0.7]["ua"] == 1.0
    assert rows[0.95]["n"] == 0 and np.isnan(rows[0.95]["accuracy"])


def test_summary_is_json_able():
    import json

    s = summary(np.array([[0.9, 0.1]]), [0])
    json.dumps(s)
    assert s["reliability"]["confidence"][0] is None and len(s["coverage"]) == 5


def test_top_label_abstains_below_min_confidence():
    assert top_label([0.2, 0.8], ["a", "b"]) == "b"
    assert top_label([0.45, 0.55], ["a", "b"], 0.6) == UNCERTAIN
    assert top_label([0.4, 0.6], ["a", "b"], 0.6) == "b"
    with pytest.raises(ConfigError, match="between 0 and 1"):
        check_min_confidence(1.5)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        check_min_confidence("high")
