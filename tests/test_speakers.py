"""serkit.speakers — the one module for per-speaker standardisation — and the other one-per-idea
foundation helpers (UA, padding, JSON): known answers, numpy and torch alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serkit.speakers import (
    CONSTANT_STD,
    FEATURE_STD_FLOOR,
    MIN_SPEAKER_UTTERANCES,
    STD_FLOOR,
    centre_speakers,
    global_stats,
    speaker_standardise,
    speaker_stats,
)


def test_speaker_standardise_known_answer():
    x = np.array([[1.0, 10.0], [3.0, 30.0], [100.0, 0.0], [102.0, 2.0]])
    out = speaker_standardise(x, ["a", "a", "b", "b"], np.zeros(2), np.ones(2), min_utterances=2)
    assert np.allclose(out, [[-1, -1], [1, 1], [-1, -1], [1, 1]])
    # a speaker with too few utterances falls back to the global statistics
    out = speaker_standardise(x, ["a", "a", "b", "b"], np.array([1.0, 0.0]), np.array([2.0, 1.0]), min_utterances=3)
    assert np.allclose(out[2], [49.5, 0.0])
    # no speakers: the global statistics for every row
    assert np.allclose(speaker_standardise(x, None, np.ones(2), np.full(2, 2.0)), (x - 1) / 2)


def test_the_std_floor_is_relative_to_the_global_std():
    # speaker a: dimension 0 varies by ±0.01 (global std 1) → floored at 0.1, so ±0.1 instead of ±1
    x = np.array([[0.99, 1.0], [1.01, 3.0]])
    mean, std = speaker_stats(x, ["a", "a"], np.zeros(2), np.ones(2), min_utterances=2, floor=0.1)
    assert np.allclose(mean, [[1.0, 2.0]] * 2) and np.allclose(std, [[0.1, 1.0]] * 2)
    assert np.allclose(
        speaker_standardise(x, ["a", "a"], np.zeros(2), np.ones(2), min_utterances=2, floor=0.1),
        [[-0.1, -1.0], [0.1, 1.0]],
    )
    # floor 0 (feature models): a varying dimension keeps its own std, a constant one counts as 1
    x = np.array([[0.99, 5.0], [1.01, 5.0]])
    _, std = speaker_stats(x, ["a", "a"], np.zeros(2), np.ones(2), min_utterances=2, floor=FEATURE_STD_FLOOR)
    assert np.allclose(std, [[0.01, 1.0]] * 2)
    assert STD_FLOOR == 0.1 and FEATURE_STD_FLOOR == 0.0 and CONSTANT_STD == 1e-8


def test_min_speaker_utterances_is_the_one_default_everywhere():
    import inspect

    from serkit.models.features import FeatureClassifier
    from serkit.training.trainer import TrainConfig

    assert MIN_SPEAKER_UTTERANCES == 10
    assert inspect.signature(FeatureClassifier).parameters["min_speaker_utterances"].default == MIN_SPEAKER_UTTERANCES
    assert TrainConfig().min_speaker_utterances == MIN_SPEAKER_UTTERANCES
    rows = np.arange(2.0 * MIN_SPEAKER_UTTERANCES).reshape(-1, 1)
    # exactly the minimum: own statistics; one fewer: the global ones
    enough = speaker_standardise(rows[:MIN_SPEAKER_UTTERANCES], ["a"] * MIN_SPEAKER_UTTERANCES, [0.0], [1.0])
    assert enough.mean() == pytest.approx(0.0) and enough.std() == pytest.approx(1.0)
    few = speaker_standardise(rows[: MIN_SPEAKER_UTTERANCES - 1], ["a"] * (MIN_SPEAKER_UTTERANCES - 1), [0.0], [1.0])
    assert np.array_equal(few, rows[: MIN_SPEAKER_UTTERANCES - 1])


def test_global_stats_constant_dimension_counts_as_one():
    mean, std = global_stats(np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 2e-9]]))
    assert mean.tolist() == pytest.approx([2.0, 5.0, 1e-9]) and std.tolist() == [1.0, 1.0, 1.0]


def test_torch_and_numpy_give_the_same_statistics():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x[:12, 2] = 3.0  # constant for speaker a
    x[12:30, 4] *= 1e-3  # nearly constant for speaker b: floored
    speakers = ["a"] * 12 + ["b"] * 18 + ["c"] * 10
    gm, gs = global_stats(x.astype(np.float64))
    mean_np, std_np = speaker_stats(x.astype(np.float64), speakers, gm, gs)
    tm, ts = global_stats(torch.from_numpy(x))
    mean_t, std_t = speaker_stats(torch.from_numpy(x), speakers, tm, ts)
    assert isinstance(mean_t, torch.Tensor) and mean_t.dtype == torch.float32
    np.testing.assert_allclose(mean_t.numpy(), mean_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std_t.numpy(), std_np, rtol=1e-5, atol=1e-6)
    assert std_np[15, 4] == pytest.approx(0.1 * gs[4])  # speaker b's near-constant dimension: the floor
    assert std_np[0, 2] == 1.0  # speaker a's constant dimension


def test_speaker_count_must_match_rows():
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match="one speaker id per utterance"):
        speaker_stats(np.zeros((3, 2)), ["a", "b"], np.zeros(2), np.ones(2))


def test_centre_speakers_known_answer():
    z = np.zeros((13, 2))
    z[:12, 0] = np.arange(12)  # speaker a: 12 clips, column 0 has mean 5.5
    z[12] = [3.0, 1.0]  # speaker b: one clip, too few for statistics
    out = centre_speakers(z, ["a"] * 12 + ["b"])
    assert np.allclose(out[:12, 0], np.arange(12) - 5.5) and np.allclose(out[:12, 1], 0.0)
    assert np.allclose(out[12], [3.0, 1.0])


def test_foundation_helpers_import_without_torch(tmp_path):
    """speakers, metrics, jsonio and audio.pad_to load and work where torch is not installed."""
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from serkit.speakers import speaker_standardise\n"
        "from serkit.metrics import unweighted_accuracy\n"
        "from serkit.jsonio import dumps\n"
        "from serkit.audio import pad_to\n"
        "out = speaker_standardise(np.array([[0.0], [2.0]]), ['a', 'a'], [0.0], [1.0], min_utterances=2)\n"
        "print(out.ravel().tolist(), unweighted_accuracy([0, 1], [0, 0]), dumps(np.float32(0.5)), len(pad_to(np.ones(3), 5)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(src)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[-1.0,", "1.0]", "0.5", "0.5", "5"]


# ---------------------------------------------------------------------------------------------
# the other one-per-idea helpers
# ---------------------------------------------------------------------------------------------
def test_one_unweighted_accuracy():
    from serkit.evaluation import metrics
    from serkit.evaluation import unweighted_accuracy as from_evaluation
    from serkit.metrics import unweighted_accuracy

    assert from_evaluation is unweighted_accuracy
    # recalls 2/3 (a), 1/2 (b), 1 (c) → 13/18
    y, p = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    assert unweighted_accuracy(y, p) == pytest.approx(13 / 18)
    names = "abc"
    assert metrics([names[i] for i in y], [names[i] for i in p], list(names))["ua"] == pytest.approx(13 / 18)
    assert np.isnan(unweighted_accuracy([], []))


def test_one_padding_rule():
    from serkit.audio import pad_to

    x = np.arange(1, 4, dtype=np.float32)
    assert pad_to(x, 7).tolist() == [0, 0, 1, 2, 3, 0, 0] and pad_to(x, 6).tolist() == [0, 1, 2, 3, 0, 0]
    assert pad_to(x, 7).dtype == np.float32 and pad_to(x, 3) is x and pad_to(x, 1) is x


def test_one_json_encoder(tmp_path):
    from serkit.jsonio import dumps, json_default

    text = dumps(
        {"i": np.int64(3), "f": np.float32(0.25), "a": np.arange(2), "p": tmp_path, "s": {1}, "b": np.bool_(True)}
    )
    assert json.loads(text) == {"i": 3, "f": 0.25, "a": [0, 1], "p": str(tmp_path), "s": [1], "b": True}
    with pytest.raises(TypeError, match="cannot store a object"):
        json_default(object())


def test_voice_groups_find_two_voices_and_fall_back_to_one_group():
    from serkit.speakers import group_stats, nearest_voice, voice_groups

    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0]) + 0.05 * rng.normal(size=(30, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.05 * rng.normal(size=(20, 3))
    groups, centroids = voice_groups(np.concatenate([a, b]), 2)
    assert groups.tolist() == [0] * 30 + [1] * 20  # groups numbered in order of their first clip
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0)
    assert nearest_voice(np.array([[0.1, 2.0, 0.0], [3.0, 0.2, 0.1]]), centroids).tolist() == [1, 0]
    # a group would have fewer clips than a speaker needs (10): one group of every clip
    groups, centroids = voice_groups(np.concatenate([a, b[:6]]), 2)
    assert set(groups.tolist()) == {0} and centroids.shape == (1, 3)
    # a group's statistics are a speaker's: the same as speaker_stats of its rows
    x = rng.normal(size=(50, 4)) * [1, 2, 3, 4] + 7
    g = np.array([0] * 30 + [1] * 20)
    mean, std = group_stats(x, g, 3, np.zeros(4), np.ones(4), floor=0.0)
    np.testing.assert_allclose(mean[1], x[30:].mean(0))
    np.testing.assert_allclose(std[0], x[:30].std(0))
    np.testing.assert_array_equal(mean[2], np.zeros(4))  # an empty group keeps the global statistics
