"""GE2E speaker encoder: Resemblyzer's published weights behind a hash check, the layer-wise port
against torch's own 3-layer LSTM, what a speaker encoder must do (tell EmoDB's speakers apart), and
the ``ge2e`` feature set. The first run fetches the 16 MB wheel once (``serkit download ge2e``)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from serkit import pretrained
from serkit.errors import ConfigError, ModelError


@pytest.fixture(scope="module")
def encoder():
    from serkit.networks.ge2e import SpeakerEncoder

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield SpeakerEncoder(pretrained=True)
    except ModelError as exc:  # offline machine without a cached copy
        pytest.skip(f"GE2E weights unavailable: {exc}")
    finally:
        torch.set_num_threads(previous)


def test_layerwise_port_equals_resemblyzers_three_layer_lstm(encoder):
    """Resemblyzer runs one nn.LSTM(40, 256, 3) and ReLU(linear(last hidden state)), L2-normed."""
    from safetensors.torch import load_file

    tensors = load_file(str(pretrained.ge2e_weights_path(download=False)))
    lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
    lstm.load_state_dict({k[len("lstm.") :]: v for k, v in tensors.items() if k.startswith("lstm.")})
    mels = torch.rand(2, 120, 40, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        frames, (hidden, _) = lstm(mels)
        raw = torch.relu(tensors["linear.bias"] + hidden[-1] @ tensors["linear.weight"].T)
        expected = raw / raw.norm(dim=1, keepdim=True)
        ours = encoder.features(mels, ["lstm3", "embedding"])
    torch.testing.assert_close(ours["lstm3"], frames, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours["embedding"], expected, rtol=1e-5, atol=1e-6)
    assert float(ours["embedding"].norm(dim=1).sub(1).abs().max()) < 1e-5
    # a zero-padded batch with lengths (packed sequences) gives each sequence what it gets alone
    short = mels[1, :70]
    padded = torch.stack([mels[0], torch.nn.functional.pad(short, (0, 0, 0, 50))])
    with torch.no_grad():
        both = encoder.features(padded, ["lstm2", "embedding"], lengths=torch.tensor([120, 70]))
        alone = encoder.features(short[None], ["lstm2", "embedding"])
    torch.testing.assert_close(both["lstm2"][1, :70], alone["lstm2"][0], rtol=1e-5, atol=1e-6)
    assert float(both["lstm2"][1, 70:].abs().max()) == 0.0
    torch.testing.assert_close(both["embedding"][1], alone["embedding"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both["embedding"][0], ours["embedding"][0], rtol=1e-5, atol=1e-6)


def test_embeddings_tell_emodb_speakers_apart(encoder, emodb_dir):
    """A working speaker encoder: among four EmoDB speakers' neutral clips (4 each), every clip's
    nearest neighbour (cosine) is a clip of the same speaker, and within-speaker similarity is far
    above between-speaker similarity (random weights give neither)."""
    from serkit.audio import read
    from serkit.features.ge2e import mel_frames

    wav = emodb_dir / "wav"
    files = [f for spk in ("03", "08", "10", "16") for f in sorted(wav.glob(f"{spk}*N*.wav"))[:4]]
    assert len(files) == 16
    with torch.no_grad():
        x = torch.cat(
            [
                encoder.features(torch.from_numpy(mel_frames(read(f, 16000)[0]))[None], "embedding")["embedding"]
                for f in files
            ]
        ).numpy()
    who = np.repeat(np.arange(4), 4)
    sim = x @ x.T
    same = (who[:, None] == who[None, :]) & ~np.eye(16, dtype=bool)
    assert sim[same].mean() > sim[who[:, None] != who[None, :]].mean() + 0.2
    np.fill_diagonal(sim, -1)
    assert np.array_equal(who[sim.argmax(1)], who)


def test_mel_frames_level_and_shape():
    from serkit.features.ge2e import mel_frames

    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    m = mel_frames(tone)
    assert m.shape == (101, 40) and m.dtype == np.float32  # centred frames: 1 + 16000 // 160
    # the level is normalised first: a 20 dB quieter copy gives the same spectrogram
    np.testing.assert_allclose(mel_frames(tone * 0.1), m, rtol=1e-4, atol=1e-6)
    assert int(np.argmax(m[50])) == int(np.argmax(mel_frames(tone * 3)[50]))
    assert np.all(mel_frames(np.zeros(800, np.float32)) == 0)  # silence stays silence, no division by zero


def test_mel_frames_equal_librosas_melspectrogram(emodb_dir):
    """The numpy front end is Resemblyzer's (librosa's 40-band mel power spectrogram), to float32 rounding."""
    librosa = pytest.importorskip("librosa")
    from serkit.audio import read
    from serkit.features.ge2e import TARGET_DBFS, mel_frames

    x, _ = read(sorted((emodb_dir / "wav").glob("*.wav"))[5], 16000)
    y = x * np.float32(10 ** (TARGET_DBFS / 20) / np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    np.testing.assert_allclose(mel_frames(x), ref, rtol=1e-4, atol=1e-7 * float(ref.max()))


def test_extractor_options_batch_and_padding(encoder):
    from serkit.features import get_extractor

    ex = get_extractor("ge2e")
    assert ex.sampling_rate == 16000 and ex.config()["layer"] == ["lstm2", "lstm3"]
    names = ex.feature_names()
    assert len(names) == 1024 and names[0] == "lstm2_mean_0" and names[-1] == "lstm3_std_255"
    assert get_extractor("ge2e", **{k: v for k, v in ex.config().items() if k != "weights"}).config() == ex.config()
    rng = np.random.default_rng(3)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 300, 24000)]
    batch = ex.functionals_batch(clips)
    assert batch.shape == (3, 1024)
    for i, c in enumerate(clips):
        np.testing.assert_allclose(batch[i], ex.functionals(c), rtol=1e-5, atol=1e-6)
    # the 300-sample clip was zero-padded at the end to min_duration (800 samples)
    np.testing.assert_allclose(batch[1], ex.functionals(np.pad(clips[1], (0, 500))), rtol=1e-5, atol=1e-6)
    # pooled statistics are the layer's frame mean and (population) standard deviation, floored at
    # sqrt(1e-5) as in every serkit pooling (a constant channel must not divide by zero downstream)
    from serkit.features.ge2e import mel_frames

    with torch.no_grad():
        a = encoder.features(torch.from_numpy(mel_frames(clips[0]))[None], "lstm2")["lstm2"][0].numpy()
    np.testing.assert_allclose(batch[0, :256], a.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(batch[0, 256:512], np.sqrt(np.maximum(a.var(0), 1e-5)), rtol=1e-4, atol=1e-5)
    emb = get_extractor("ge2e", layer="embedding").functionals(clips[0])
    assert emb.shape == (256,) and abs(float(np.linalg.norm(emb)) - 1) < 1e-5
    for bad, match in (({"layer": "lstm4"}, "unknown layer"), ({"pool": "median"}, "unknown pool")):
        with pytest.raises(ConfigError, match=match):
            get_extractor("ge2e", **bad)


def test_weights_are_hash_checked_and_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pretrained.GE2E_ENV, raising=False)
    with pytest.raises(ModelError, match="serkit download ge2e") as err:
        pretrained.ge2e_weights_path(download=False, progress=False)
    assert "pip download --no-deps --only-binary :all: resemblyzer==0.1.4" in str(err.value)
    folder = tmp_path / "cache" / "pretrained"
    (folder / "pretrained.pt").write_bytes(b"not the checkpoint")
    with pytest.raises(ModelError, match="sha256 [0-9a-f]{64}, expected 39373b86"):
        pretrained.ge2e_weights_path(download=False, progress=False)
    (folder / "pretrained.pt").unlink()
    with zipfile.ZipFile(folder / pretrained.GE2E_WHEEL, "w") as zf:
        zf.writestr("resemblyzer/other.py", "x = 1\n")
    with pytest.raises(ModelError, match="no member 'resemblyzer/pretrained.pt'"):
        pretrained.ge2e_weights_path(download=False, progress=False)
    (folder / pretrained.GE2E_WHEEL).write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="as a wheel"):
        pretrained.ge2e_weights_path(download=False, progress=False)
    assert not (folder / pretrained.GE2E_FILE).exists()


def test_slowdown_views_concatenate(encoder):
    from serkit.audio import resample
    from serkit.features import get_extractor

    one = get_extractor("ge2e", layer="lstm2", pool="mean")
    ex = get_extractor("ge2e", layer="lstm2", pool="mean", slowdown=[0.85, 1, 1.2])
    assert "slowdown" not in one.config() and ex.config()["slowdown"] == [0.85, 1.0, 1.2]
    assert ex.sampling_rate == 19200 and ex.min_duration == pytest.approx(0.05 / 0.85)
    assert ex.feature_names()[0] == "x0.85_lstm2_mean_0" and len(ex.feature_names()) == 768
    rng = np.random.default_rng(4)
    clip = (0.1 * rng.standard_normal(19200)).astype(np.float32)  # 1 s at the largest rate
    vec = ex.functionals(clip)
    # each view is the clip resampled to 16000 * k Hz, then presented to the encoder as 16 kHz
    np.testing.assert_allclose(vec[256:512], one.functionals(resample(clip, 19200, 16000)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vec[:256], one.functionals(resample(clip, 19200, 13600)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vec[512:], one.functionals(clip), rtol=1e-4, atol=1e-5)


def test_hop_length_reads_every_second_frame_and_keeps_the_old_cache_key(encoder):
    from serkit.features import get_extractor
    from serkit.features.ge2e import mel_frames

    rng = np.random.default_rng(5)
    clip = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    # centred frames at a 320-sample hop start where every second 160-sample frame does (equal to
    # float32 rounding: BLAS may sum the mel products of 51 and of 101 frames in different orders)
    np.testing.assert_allclose(mel_frames(clip, 320), mel_frames(clip)[::2], rtol=1e-6, atol=1e-9)
    assert mel_frames(clip, 320).shape == (51, 40)
    base, half = get_extractor("ge2e"), get_extractor("ge2e", hop_length=320)
    assert "hop_length" not in base.config() and half.config()["hop_length"] == 320
    assert base.full_config() != half.full_config()  # a separate cache entry
    with torch.no_grad():
        states = encoder.features(torch.from_numpy(mel_frames(clip)[::2].copy())[None], "lstm2")["lstm2"][0].numpy()
    np.testing.assert_allclose(half.functionals(clip)[:256], states.mean(0), rtol=1e-4, atol=1e-5)
    for bad in (100, 401, 320.0, True):
        with pytest.raises(ConfigError, match="hop_length must be a whole number of samples from 160 to 400"):
            get_extractor("ge2e", hop_length=bad)
