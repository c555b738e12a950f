"""Pretraining without labels (serkit.training.pretrain, serkit pretrain, model.init): known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn

from serkit.errors import ConfigError, ModelError
from serkit.networks.waveform import EncoderBlocks
from serkit.training.losses import cosine_distance, distillation_kl, nt_xent
from serkit.training.pretrain import BACKBONE_FILE, META_FILE, Pretrainer, load_backbone, read_checkpoint

# -- NT-Xent ----------------------------------------------------------------------------------


def test_nt_xent_of_random_embeddings_is_log_2n_minus_1():
    # random directions in 4096 dimensions are nearly orthogonal: every similarity ~ 0, so each of
    # the 2N anchors picks its positive among 2N - 1 equally likely candidates
    g = torch.Generator().manual_seed(0)
    for n in (4, 16, 32):
        z1, z2 = torch.randn(n, 4096, generator=g), torch.randn(n, 4096, generator=g)
        assert float(nt_xent(z1, z2, temperature=1.0)) == pytest.approx(math.log(2 * n - 1), abs=0.02)


def test_nt_xent_of_identical_views_is_at_its_minimum():
    n, tau = 8, 0.5
    z = torch.eye(16)[:n] * 3.0  # orthogonal clips (the scale is normalised away), both views identical
    best = float(nt_xent(z, z.clone(), temperature=tau))
    # positive similarity 1, all 2N - 2 negatives 0: the smallest value with non-negative similarities
    assert best == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-5)
    g = torch.Generator().manual_seed(1)
    for scale in (0.05, 0.3, 1.0):  # any perturbation of the second view costs
        assert float(nt_xent(z, z + scale * torch.randn(z.shape, generator=g), temperature=tau)) > best
    assert float(nt_xent(z, torch.randn(z.shape, generator=g), temperature=tau)) > best + 1.0


def test_nt_xent_refuses_a_batch_of_one():
    with pytest.raises(ConfigError, match="N >= 2"):
        nt_xent(torch.ones(1, 4), torch.ones(1, 4))


def test_distillation_losses_are_zero_when_student_matches():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 7, generator=g)
    for t in (1.0, 2.0, 4.0):
        # a teacher softmax(s) tempered to softmax(log p / T) = softmax(s / T): exactly the student's
        assert float(distillation_kl(logits, torch.softmax(logits, 1), t)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_kl(logits, torch.softmax(-logits, 1), 2.0)) > 0.1
    assert float(cosine_distance(logits, 2.5 * logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distance(logits, -logits)) == pytest.approx(2.0, abs=1e-6)


# -- a tiny network in the blockwise contract ----------------------------------------------------


class _FrameEncoder(nn.Module):
    """A linear map of 16-sample frames: the pooled mean is linear in the clip's mean frame."""

    out_channels = 16
    min_samples = 16

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 16, 16, stride=16, bias=False)

    def frame_lengths(self, lengths):
        return lengths // 16

    def forward(self, waveform, *, lengths=None):
        return self.conv(waveform[:, None, :])


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return EncoderBlocks(_FrameEncoder(), 2, name="frames", sampling_rate=16000, pool="meanmax")


def _signals(n, length=1600, seed=0):
    """Clips that repeat their own random 16-sample frame, plus a little noise."""
    rng = np.random.default_rng(seed)
    return [
        (0.1 * (np.tile(rng.standard_normal(16), length // 16) + 0.1 * rng.standard_normal(length))).astype(np.float32)
        for _ in range(n)
    ]


def _mean_frames(signals):
    return np.stack([s.reshape(-1, 16).mean(0) for s in signals])


ARCH = {"network": "frames", "options": {}}


def _student_outputs(net, meta, out, signals):
    """The pretrained student's projection of ``signals`` (whole clips, eval mode)."""
    from safetensors.torch import load_file

    from serkit.networks.heads import ProjectionHead

    proj = meta["projection"]
    head = ProjectionHead(proj["in_dim"], proj["out_dim"], proj["hidden"])
    state = load_file(str(out / "state.safetensors"))
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    head.eval()
    net.eval()
    x = torch.as_tensor(np.stack(signals))
    with torch.no_grad():
        return head(net.pooled_from(x, torch.full((len(x),), x.shape[1]), 0)).numpy()


@pytest.mark.parametrize("match", ["embedding", "distribution"])
def test_student_recovers_a_fixed_linear_teacher(tmp_path, match):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    train, held = _signals(128, seed=4), _signals(64, seed=5)

    def teacher(signals):
        t = _mean_frames(signals) @ a.T
        if match == "distribution":
            e = np.exp(20 * t - (20 * t).max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        return t

    config = {
        "epochs": 30,
        "batch_size": 32,
        "lr": 0.02,
        "weight_decay": 0.0,
        "crop_seconds": None,
        "augment": False,
        "projection_hidden": 0,
        "distill_temperature": 1.0,
        "match": match,
    }
    net = _tiny_net()
    meta = Pretrainer(config, threads=1).fit(
        net, train, method="teacher", architecture=ARCH, out=tmp_path / "p", teacher=teacher(train)
    )
    assert meta["match"] == match and meta["epochs_done"] == 30
    assert meta["history"][-1]["loss"] < 0.1 * meta["history"][0]["loss"]
    student, truth = _student_outputs(net, meta, tmp_path / "p", held), teacher(held)
    if match == "embedding":
        cos = (student * truth).sum(1) / np.linalg.norm(student, axis=1) / np.linalg.norm(truth, axis=1)
        assert cos.mean() > 0.98  # held-out clips: the linear map itself was learned
    else:
        assert (student.argmax(1) == truth.argmax(1)).mean() > 0.9


def test_pretrain_resume_finish_equals_an_uninterrupted_run(tmp_path):
    signals = _signals(40, length=3200, seed=6)
    config = {
        "epochs": 3,
        "batch_size": 8,
        "crop_seconds": 0.1,
        "projection_dim": 8,
        "projection_hidden": 16,
        "seed": 7,
    }
    whole = Pretrainer(config, threads=1).fit(
        _tiny_net(), signals, method="simclr", architecture=ARCH, out=tmp_path / "a"
    )
    Pretrainer(config, threads=1).fit(
        _tiny_net(), signals, method="simclr", architecture=ARCH, out=tmp_path / "b", stop_after=1
    )
    assert read_checkpoint(tmp_path / "b")["epochs_done"] == 1
    resumed = Pretrainer(config, threads=1).fit(
        _tiny_net(seed=99), signals, method="simclr", architecture=ARCH, out=tmp_path / "b", resume=True
    )
    assert resumed["epochs_done"] == 3
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / "state.safetensors")), load_file(str(tmp_path / "b" / "state.safetensors"))
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the augmentation really drew random numbers (views differ): the loss moved between epochs
    assert len({h["loss"] for h in whole["history"]}) == 3


def test_resume_refuses_changed_options(tmp_path):
    signals = _signals(16, seed=8)
    config = {"epochs": 1, "batch_size": 8, "crop_seconds": None, "projection_dim": 8, "projection_hidden": 0}
    Pretrainer(config, threads=1).fit(_tiny_net(), signals, method="simclr", architecture=ARCH, out=tmp_path / "p")
    with pytest.raises(ConfigError, match="temperature"):
        Pretrainer({**config, "temperature": 0.5}, threads=1).fit(
            _tiny_net(), signals, method="simclr", architecture=ARCH, out=tmp_path / "p", resume=True
        )


# -- the real networks: model.init ---------------------------------------------------------------


@pytest.fixture(scope="module")
def soundnet_res_checkpoint(tmp_path_factory):
    from serkit.models import build_model

    model = build_model({"family": "soundnet-res"})
    out = tmp_path_factory.mktemp("pre") / "p"
    rng = np.random.default_rng(9)
    signals = [(0.1 * rng.standard_normal(4000)).astype(np.float32) for _ in range(4)]
    config = {"epochs": 1, "batch_size": 4, "crop_seconds": 0.2, "projection_dim": 8, "projection_hidden": 16}
    Pretrainer(config, threads=1).fit(
        model.pretrain_network(), signals, method="simclr", architecture=model.architecture(), out=out
    )
    return out


def test_model_init_loads_the_pretrained_backbone(soundnet_res_checkpoint):
    from safetensors.torch import load_file

    from serkit.models import build_model

    saved = load_file(str(soundnet_res_checkpoint / BACKBONE_FILE))
    meta = json.loads((soundnet_res_checkpoint / META_FILE).read_text())
    assert meta["architecture"] == {"network": "soundnet-res", "options": {}}
    model = build_model({"family": "soundnet-res", "init": str(soundnet_res_checkpoint)})
    net = model._initial_net(3)
    fresh = build_model({"family": "soundnet-res"})._initial_net(3)
    state, fresh_state = net.state_dict(), fresh.state_dict()
    assert len(saved) > 50 and all(k.startswith("blocks.") for k in saved)
    differs = 0
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
        differs += not torch.equal(fresh_state[k], v)
    assert differs > 10  # pretraining moved the weights, and init put them in
    assert model.config()["init"] == str(soundnet_res_checkpoint)


def test_model_init_mismatch_names_both_architectures(soundnet_res_checkpoint):
    from serkit.models import build_model

    model = build_model({"family": "cnn-lstm", "init": str(soundnet_res_checkpoint)})
    with pytest.raises(ModelError, match=r"holds a soundnet-res backbone.*network is cnn-lstm \(.*channels"):
        model._initial_net(3)
    with pytest.raises(ModelError, match="not a serkit pretraining checkpoint"):
        load_backbone(_tiny_net(), soundnet_res_checkpoint.parent, ARCH)


def test_api_pretrain_with_an_npz_teacher(tmp_path):
    import soundfile as sf

    from serkit.api import pretrain

    rng = np.random.default_rng(10)
    folder = tmp_path / "clips"
    folder.mkdir()
    names = []
    for i in range(6):
        sf.write(folder / f"c{i}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        names.append(f"c{i}.wav")
    probs = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    np.savez(tmp_path / "teacher.npz", files=np.array(names), targets=probs)
    overrides = [
        "pretrain.epochs=1",
        "pretrain.batch_size=3",
        "pretrain.crop_seconds=0.2",
        "pretrain.projection_hidden=0",
    ]
    out, meta = pretrain(
        [str(folder)],
        out=tmp_path / "p",
        method="teacher",
        teacher=str(tmp_path / "teacher.npz"),
        overrides=overrides,
        progress=False,
    )
    assert meta["match"] == "distribution" and meta["projection"]["out_dim"] == 3
    assert meta["data"]["n_clips"] == 6 and meta["data"]["teacher"]["kind"] == "npz"
    np.savez(tmp_path / "partial.npz", files=np.array(names[:4]), targets=probs[:4])
    with pytest.raises(ConfigError, match="no row for 2 of 6 clips"):
        pretrain([str(folder)], out=tmp_path / "q", method="teacher", teacher=str(tmp_path / "partial.npz"),
                 overrides=overrides, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="needs --teacher"):
        pretrain([str(folder)], out=tmp_path / "q", method="teacher", progress=False)


@pytest.fixture
def six_clips(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(11)
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(6):
        t = np.arange(8000) / 16000
        sf.write(
            folder / f"c{i}.wav",
            (0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(8000)).astype(np.float32),
            16000,
        )
    return folder


QUICK = ["pretrain.epochs=1", "pretrain.batch_size=3", "pretrain.crop_seconds=0.2", "pretrain.projection_hidden=0"]


def test_a_serkit_model_teaches_its_probabilities(six_clips, small_model_dir, tmp_path):
    from serkit.api import pretrain

    _, meta = pretrain([str(six_clips)], out=tmp_path / "p", method="teacher", teacher=str(small_model_dir),
                       overrides=QUICK, progress=False)  # fmt: skip
    assert meta["match"] == "distribution" and meta["projection"]["out_dim"] == 3  # angry, neutral, sad
    assert meta["data"]["teacher"] == {
        "kind": "model",
        "path": str(small_model_dir),
        "family": "features",
        "output": "probabilities",
    }


@pytest.mark.slow  # GE2E's extraction pool starts worker processes: 20-75 s on a shared machine
def test_ge2e_teaches_its_embedding(six_clips, tmp_path):
    from serkit.api import pretrain

    _, meta = pretrain([str(six_clips)], out=tmp_path / "p", method="teacher", teacher="ge2e", overrides=QUICK,
                       progress=False)  # fmt: skip
    # GE2E's utterance embedding is a unit vector with non-negative entries (ReLU), not a distribution
    assert meta["match"] == "embedding" and meta["projection"]["out_dim"] == 256
    with pytest.raises(ConfigError, match="not a model folder"):
        pretrain([str(six_clips)], out=tmp_path / "q", method="teacher", teacher="wav2vec", progress=False)
