"""Known answers for serkit.domain: Ledoit-Wolf, CORAL maps, MMD."""

import numpy as np
import pytest

from serkit.domain import apply_map, coral_map, covariance, domain_stats, ledoit_wolf_shrinkage, mmd
from serkit.errors import ConfigError


def _gaussian(rng, n, mean, cov):
    return rng.multivariate_normal(mean, cov, size=n)


def _random_cov(rng, d, scale=1.0):
    q = rng.normal(size=(d, d))
    return scale * (q @ q.T / d + 0.1 * np.eye(d))


def test_ledoit_wolf_matches_sklearn():
    sk = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(0)
    for n, d in [(30, 50), (200, 10), (500, 40)]:
        x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        cov, s = covariance(x)
        ref_cov, ref_s = sk.ledoit_wolf(x)
        assert s == pytest.approx(ref_s, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(cov, ref_cov, rtol=1e-8, atol=1e-10)
        assert ledoit_wolf_shrinkage(x) == pytest.approx(ref_s, rel=1e-9, abs=1e-12)


def test_fixed_shrinkage_and_bad_values():
    x = np.random.default_rng(1).normal(size=(50, 4))
    cov, s = covariance(x, shrinkage=0.0)
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True))
    assert s == 0.0
    cov1, _ = covariance(x, shrinkage=1.0)
    np.testing.assert_allclose(cov1, np.eye(4) * np.trace(cov) / 4)
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        covariance(x, shrinkage=1.5)
    with pytest.raises(ConfigError, match="ledoit-wolf"):
        covariance(x, shrinkage="oas")


def test_coral_target_to_source_recovers_source_moments():
    rng = np.random.default_rng(2)
    d = 5
    cs, ct = _random_cov(rng, d), _random_cov(rng, d, scale=3.0)
    src = _gaussian(rng, 20000, np.zeros(d), cs)
    tgt = _gaussian(rng, 20000, np.full(d, 4.0), ct)
    # without shrinkage the mapped sample covariance is exactly the source's sample covariance
    a0, b0 = coral_map(domain_stats(src, 0.0), domain_stats(tgt, 0.0))
    np.testing.assert_allclose(np.cov(apply_map(tgt, a0, b0).T, bias=True), np.cov(src.T, bias=True), atol=1e-8)
    a, b = coral_map(domain_stats(src), domain_stats(tgt))
    mapped = apply_map(tgt, a, b)
    np.testing.assert_allclose(mapped.mean(0), src.mean(0), atol=1e-8)
    # with Ledoit-Wolf shrinkage, within sampling error of the true source covariance
    assert np.abs(np.cov(mapped.T) - cs).max() < 0.05 * np.abs(cs).max()


def test_coral_source_to_target_recovers_target_covariance():
    rng = np.random.default_rng(3)
    d = 4
    cs, ct = _random_cov(rng, d), _random_cov(rng, d, scale=0.5)
    src = _gaussian(rng, 20000, np.ones(d), cs)
    tgt = _gaussian(rng, 20000, -np.ones(d), ct)
    a, b = coral_map(domain_stats(src), domain_stats(tgt), direction="source-to-target")
    recoloured = apply_map(src, a, b)
    assert np.abs(np.cov(recoloured.T) - ct).max() < 0.05 * np.abs(ct).max()
    np.testing.assert_allclose(recoloured.mean(0), tgt.mean(0), atol=1e-8)
    with pytest.raises(ConfigError, match="target-to-source"):
        coral_map(domain_stats(src), domain_stats(tgt), direction="sideways")


def test_coral_few_rows_many_dims_stays_finite():
    rng = np.random.default_rng(4)
    src, tgt = rng.normal(size=(300, 60)), 2 + 3 * rng.normal(size=(25, 60))
    a, b = coral_map(domain_stats(src), domain_stats(tgt))
    mapped = apply_map(tgt, a, b)
    assert np.isfinite(mapped).all()
    assert np.abs(mapped.mean(0)).max() < 1e-8 + np.abs(src.mean(0)).max()


def test_mmd_zero_for_identical_and_grows_with_shift():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 3))
    assert mmd(x, x) == pytest.approx(0.0, abs=1e-12)
    values = [mmd(x, rng.normal(size=(200, 3)) + shift, scales=[0.5, 1.0, 2.0]) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values[0] < 0.05
    assert values == sorted(values)
    assert values[-1] > 10 * values[0]


def test_diagonal_target_keeps_every_variance():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(15, 40)) * np.linspace(0.1, 10, 40)  # fewer rows than dimensions
    cov, s = covariance(x, shrink_to="diagonal")
    np.testing.assert_allclose(np.diag(cov), x.var(axis=0), rtol=1e-10)
    assert 0 < s <= 1
    ident, _ = covariance(x)
    assert np.abs(np.diag(ident) - x.var(axis=0)).max() > 1.0  # shrinking to mu*I moves the variances
    with pytest.raises(ConfigError, match="diagonal"):
        covariance(x, shrink_to="eye")


def test_self_training_head_learns_the_targets_clusters_from_noisy_guesses():
    from serkit.domain import fit_target_head

    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = 4.0 * np.eye(5)[y] + rng.normal(size=(300, 5))  # three separable target clusters
    # a shifted model: right and confident on 60 % of clips, a hesitant random guess on the rest
    proba = np.full((300, 4), 0.1)  # a fourth class the target does not have
    right = rng.random(300) < 0.6
    guess = np.where(right, y, rng.integers(0, 3, 300))
    proba[np.arange(300), guess] = np.where(right, 0.7, 0.3)
    proba /= proba.sum(1, keepdims=True)
    head = fit_target_head(x, proba)
    assert head.classes.tolist() == [0, 1, 2] and head.n_labels == 4
    refined = head.refine(proba, x)
    assert (proba.argmax(1) == y).mean() < 0.76 and (refined.argmax(1) == y).mean() > 0.95
    np.testing.assert_allclose(refined.sum(1), 1.0)
    assert refined[:, 3].max() < 1e-4  # the class never predicted on the target is all but ruled out
    # a model that guesses one class everywhere teaches nothing
    assert fit_target_head(x, np.tile([0.7, 0.1, 0.1, 0.1], (300, 1))) is None
