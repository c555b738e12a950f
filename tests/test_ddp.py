"""Data-parallel training (serkit.training.distributed, Trainer inside a process group, train --nproc)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from serkit.errors import ConfigError, SerkitError
from serkit.training import distributed
from serkit.training.distributed import World, launch, shard
from serkit.training.trainer import _train_batches

from .conftest import data_dir

# -- shards (known answers, no processes) ---------------------------------------------------------


@pytest.mark.parametrize("n, batch_size, size", [(37, 8, 2), (40, 16, 2), (35, 16, 4), (9, 4, 1)])
def test_ranks_see_disjoint_shards_whose_union_is_the_epoch(n, batch_size, size):
    order = np.random.default_rng(0).permutation(n)
    batches = _train_batches(order, batch_size, size)
    assert np.array_equal(np.concatenate(batches), order)  # the batches are the epoch, in order
    for batch in batches:
        parts = [batch[shard(len(batch), r, size)] for r in range(size)]
        assert np.array_equal(np.concatenate(parts), batch)  # disjoint, contiguous, nothing lost
        assert min(len(p) for p in parts) >= 2  # batch norm gets two clips on every rank
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    # every rank takes the same number of steps: one per batch
    assert len(batches) == (n // batch_size if n % batch_size < 2 * size else n // batch_size + 1)


def test_one_process_batches_are_the_old_rule():
    """n_shards=1 keeps the one-process rule: only a last batch of one joins the previous."""
    order = np.arange(17)
    assert [len(b) for b in _train_batches(order, 8)] == [8, 9]
    assert [len(b) for b in _train_batches(np.arange(18), 8)] == [8, 8, 2]
    assert [len(b) for b in _train_batches(np.arange(18), 8, 2)] == [8, 10]


def test_gather_and_scale_are_identities_in_one_process():
    loss = torch.tensor(2.5)
    assert distributed.scale_loss(loss, 3, 7, World()) is loss
    assert distributed.gather(lambda ix: ix * 10, np.arange(4), World()).tolist() == [0, 10, 20, 30]
    assert distributed.world() == World(0, 1)


# -- in two processes --------------------------------------------------------------------------------


def _grad_rank(x, y):
    """One rank: a tiny MLP in DDP, its shard of a 7-clip batch, the trainer's loss scaling; all ranks' grads."""
    import torch.distributed as dist
    from torch import nn

    w = distributed.world()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    ddp = distributed.wrap(net, torch.device("cpu"))
    part = shard(len(y), w.rank, w.size)
    logits = ddp(lambda m: m(torch.as_tensor(x[part])))
    loss = nn.functional.cross_entropy(logits, torch.as_tensor(y[part]))
    distributed.scale_loss(loss, len(part), len(y), w).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    every: list = [None] * w.size
    dist.all_gather_object(every, grads)
    return every


def test_averaged_gradient_equals_the_one_process_gradient_of_the_whole_batch():
    """Known answer: 2 ranks with shards of 4 and 3 clips, DDP average = the 7-clip batch's gradient (1e-6)."""
    from torch import nn

    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=7)
    every = launch(2, _grad_rank, (x, y))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    nn.functional.cross_entropy(net(torch.as_tensor(x)), torch.as_tensor(y)).backward()
    assert len(every) == 2
    for grads in every:  # both ranks hold the same, whole-batch gradient
        for g, p in zip(grads, net.parameters()):
            np.testing.assert_allclose(g.numpy(), p.grad.numpy(), rtol=1e-6, atol=1e-7)


def _crash_rank(kind):
    import torch.distributed as dist

    if distributed.world().rank == 1:
        if kind == "serkit":
            raise ConfigError("rank one has a bad recipe")
        raise RuntimeError("rank one fell over")
    dist.barrier()  # rank 0 waits for a rank that never comes
    return "unreachable"


@pytest.mark.parametrize("kind", ["serkit", "other"])
def test_a_rank_that_fails_stops_the_others_with_its_error(kind):
    t0 = time.perf_counter()
    if kind == "serkit":
        with pytest.raises(ConfigError, match="rank one has a bad recipe"):
            launch(2, _crash_rank, (kind,), timeout=120)
    else:
        with pytest.raises(SerkitError, match="training process 1 of 2 failed: RuntimeError: rank one fell over"):
            launch(2, _crash_rank, (kind,), timeout=120)
    assert time.perf_counter() - t0 < 60  # not the collective timeout: the failed rank ends the others


# -- the trainer in two processes on real speech ----------------------------------------------------


def _speakers(groups, spk):
    sad = groups[(spk, "T")]
    return groups[(spk, "W")][: len(sad)] + sad


def _anger_sadness():
    """EmoDB anger vs sadness: speakers 03, 08, 09, 11 to train (one held out for early stopping), 16 to test."""
    from .test_training import _emodb_anger_sadness

    groups = _emodb_anger_sadness(data_dir("emodb"))
    train = [u for s in ("03", "08", "09", "11") for u in _speakers(groups, s)]
    return train, _speakers(groups, "16")


#: a half-width cnn-lstm, 2-s crops, early stopping on a held-out training speaker. Without speaker
#: normalisation: on 38 clips (5 steps an epoch) the encoder's batch-norm statistics take ~6 epochs to
#: settle, and the speaker-normalised head then stopped at epoch 1 once in 6 runs (one process too).
SMALL_CNN_LSTM = {
    "family": "cnn-lstm",
    "channels": [8, 16, 32],
    "lstm_hidden": 64,
    "train": {
        "epochs": 12,
        "cosine_period": 12,
        "batch_size": 8,
        "crop_seconds": 2.0,
        "val_fraction": 0.25,
        "patience": 3,
        "min_epochs": 8,
    },
}


def _fit_rank(section, train, test):
    """One rank: fit, then every rank's history, best epoch, weight checksum and held-out predictions."""
    import torch.distributed as dist

    from serkit.models import build_model

    model = build_model(section).fit(train, progress=False)
    state = model.net_.state_dict()
    checksum = float(sum(t.double().abs().sum() for t in state.values() if t.is_floating_point()))
    mine = {
        "rank": distributed.world().rank,
        "training": model.training_,
        "checksum": checksum,
        "proba": model.predict_proba_utterances(test, adapt=False),
        "labels": model.labels,
    }
    every: list = [None] * distributed.world().size
    dist.all_gather_object(every, mine)
    return every


@pytest.fixture(scope="module")
def two_rank_fit():
    train, test = _anger_sadness()
    t0 = time.perf_counter()
    every = launch(2, _fit_rank, (SMALL_CNN_LSTM, train, test))
    return every, test, time.perf_counter() - t0


def test_two_process_ddp_learns_on_a_held_out_speaker(two_rank_fit):
    """2-process gloo DDP of a small cnn-lstm beats chance (0.5) on speaker 16 by a wide margin
    (measured: UA 1.0, 1.0, 1.0 for seeds 0, 1, 2; best epoch 12 of 12 each time)."""
    from serkit.metrics import unweighted_accuracy

    every, test, _ = two_rank_fit
    r0 = every[0]
    y = [r0["labels"].index(u.label) for u in test]
    ua = unweighted_accuracy(np.asarray(y), r0["proba"].argmax(1))
    assert ua >= 0.7, f"held-out speaker UA {ua:.2f} (chance 0.5)"
    assert r0["training"]["n_train"] + r0["training"]["n_val"] == len(_anger_sadness()[0])


def test_all_ranks_end_identical_and_stop_at_the_same_epoch(two_rank_fit):
    every, _, _ = two_rank_fit
    r0, r1 = every
    assert (r0["rank"], r1["rank"]) == (0, 1)
    assert r0["training"]["best_epoch"] == r1["training"]["best_epoch"]
    assert r0["training"]["epochs_run"] == r1["training"]["epochs_run"]
    # the same validation numbers every epoch (all-gathered rows), the same summed training loss
    strip = [{k: v for k, v in h.items() if k not in ("seconds", "cpu_seconds")} for h in r0["training"]["history"]]
    assert strip == [
        {k: v for k, v in h.items() if k not in ("seconds", "cpu_seconds")} for h in r1["training"]["history"]
    ]
    assert r0["checksum"] == r1["checksum"]  # the same weights (and averaged batch-norm statistics)
    np.testing.assert_array_equal(r0["proba"], r1["proba"])
    assert r0["training"]["val_speakers"] == r1["training"]["val_speakers"] and r0["training"]["n_val"] > 0


# -- the verb ----------------------------------------------------------------------------------------


def test_feature_families_refuse_nproc_and_name_the_network_families(tmp_path):
    from serkit.api import train

    with pytest.raises(ConfigError, match=r"network families \(cnn-lstm, soundnet, soundnet-res, ssl, transformer\)"):
        train([f"emodb:{data_dir('emodb')}"], "egemaps-svm", out=tmp_path / "m", nproc=2)
    with pytest.raises(ConfigError, match="--nproc 0 must be"):
        train([f"emodb:{data_dir('emodb')}"], "cnn-lstm", out=tmp_path / "m", nproc=0)
    with pytest.raises(ConfigError, match="--address applies to --engine ray"):
        train([f"emodb:{data_dir('emodb')}"], "cnn-lstm", out=tmp_path / "m", nproc=2, address="auto")


@pytest.mark.parametrize(
    "n_clips, batch_size, match",
    [(6, 16, "on 4 processes needs at least 8 training utterances"), (12, 4, "train.batch_size 4 split over 4")],
)
def test_too_few_clips_per_process_is_a_clear_error(monkeypatch, n_clips, batch_size, match):
    import serkit.training.trainer as trainer_module
    from serkit.models import build_model

    from .conftest import tone

    monkeypatch.setattr(trainer_module, "world", lambda: World(0, 4))  # rank 0 of 4, checked before any collective
    model = build_model({**SMALL_CNN_LSTM, "train": {"batch_size": batch_size, "val_fraction": 0.0}})
    net = model._build_net(2, pretrained=False)
    signals = [tone(200.0 + 50 * i, 0.5) for i in range(n_clips)]
    with pytest.raises(ConfigError, match=match):
        trainer_module.Trainer(model._train_config()).fit(
            net, signals, [i % 2 for i in range(n_clips)], ["a"] * n_clips, n_classes=2
        )


@pytest.mark.slow
def test_ray_train_runs_the_same_per_rank_fit_and_saves_rank_0s_model(tmp_path):
    """``serkit train --engine ray --nproc 2`` on a local Ray (~60-90 s: Ray's start-up dominates)."""
    pytest.importorskip("ray.train")
    import json

    import ray

    from serkit.api import train
    from serkit.models import load_model

    train_utts, test = _anger_sadness()
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label,speaker\n" + "".join(f"{u.path},{u.label},{u.speaker}\n" for u in train_utts))
    section = {**SMALL_CNN_LSTM, "train": {**SMALL_CNN_LSTM["train"], "epochs": 3, "min_epochs": 3}}
    try:
        out = train(
            [f"manifest:{manifest}"], {"name": "small", "model": section}, out=tmp_path / "m", nproc=2, engine="ray"
        )
    finally:
        ray.shutdown()
    meta = json.loads((out / "model.json").read_text())
    assert meta["distributed"] == {"processes": 2, "backend": "gloo"}
    model, _ = load_model(out)
    assert json.loads((out / "training.json").read_text())["epochs_run"] == 3
    assert model.predict_proba_utterances(test).shape == (len(test), 2)
