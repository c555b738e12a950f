"""Model folders never run code or read outside themselves; damaged ones give one clear ModelError."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serkit.artifact import SKOPS_ALLOWED, load_skops, model_file, read_metadata
from serkit.errors import ModelError
from serkit.inference import DEFAULT_MODEL_DIR
from serkit.models import load_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = sorted((ROOT / "examples" / "audio").glob("*.flac"))[0]


def _payload_pipeline(marker: Path):
    """The issue-13 payload: a Pipeline whose FunctionTransformers turn any input into exec(source)."""
    from numpy.testing._private.utils import runstring
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    source = f"open({str(marker)!r}, 'w').write('pwned')"
    head = LogisticRegression().fit(np.arange(6.0).reshape(-1, 1), [0, 1] * 3)
    return Pipeline(
        [
            ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": source, "dtype": "U300"})),
            ("take", FunctionTransformer(np.take, kw_args={"indices": 0})),
            ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
            ("clf", head),
        ]
    )


def _copy_default(tmp_path: Path, *, onnx: bool = False) -> Path:
    """A copy of the default model; without ``onnx`` its exported graphs are left out of
    ``model.json``, so it loads its scikit-learn classifier (``estimators.skops``), the file most of
    these tests tamper with."""
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    if not onnx:
        meta = json.loads((target / "model.json").read_text())
        del meta["config"]["onnx"]
        (target / "model.json").write_text(json.dumps(meta))
    return target


def test_payload_is_live_without_the_allow_list(tmp_path):
    """Sanity: skops with its own trust rules would run the source (so the refusal below is real)."""
    import skops.io as sio

    marker = tmp_path / "ran"
    path = tmp_path / "evil.skops"
    sio.dump([_payload_pipeline(marker)], path)
    obj = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    with pytest.raises(Exception):  # noqa: B017  (whatever the payload ends in, it has run)
        obj[0].predict_proba(np.zeros((1, 3)))
    assert marker.read_text() == "pwned"


def test_code_execution_payload_is_refused_by_predict(tmp_path):
    import skops.io as sio

    model = _copy_default(tmp_path)
    marker = tmp_path / "ran"
    sio.dump([_payload_pipeline(marker)], model / "estimators.skops")
    with pytest.raises(ModelError, match=r"sklearn\.preprocessing\._function_transformer\.FunctionTransformer"):
        load_model(model)
    # the CLI, in its own process, as the attacker would run it
    proc = subprocess.run(
        [sys.executable, "-m", "serkit.cli", "predict", "--model", str(model), str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode != 0
    assert "types serkit does not load" in proc.stderr and "FunctionTransformer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.parametrize("thing", ["function", "method", "reduce"])
def test_callables_are_refused(tmp_path, thing):
    import skops.io as sio
    from sklearn.preprocessing import StandardScaler

    obj = {"function": [np.full_like], "method": [StandardScaler().fit], "reduce": [slice(1, 2)]}[thing]
    path = tmp_path / "x.skops"
    sio.dump(obj, path)
    with pytest.raises(ModelError, match="types serkit does not load"):
        load_skops(path)


def test_allow_list_is_exact_and_default_model_loads():
    names = {f"{m}.{c}" for loader, m, c in SKOPS_ALLOWED if loader == "ObjectNode"}
    assert names == {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.svm._classes.SVC",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
    }
    assert not any(
        loader in ("FunctionNode", "MethodNode", "ReduceNode", "OperatorFuncNode", "PartialNode")
        for loader, _, _ in SKOPS_ALLOWED
    )
    model, meta = load_model(DEFAULT_MODEL_DIR)
    assert model.labels_ == meta["labels"] and len(model.estimators_) == 1


@pytest.mark.parametrize("kind", ["svm-linear", "svm-rbf", "logreg", "rf"])
def test_every_classifier_serkit_builds_round_trips(tmp_path, kind):
    import skops.io as sio

    from serkit.models.features import _make_estimator

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)), np.arange(40) % 4
    for probability in (True, False):
        est = _make_estimator(kind, {}, "balanced", 0, probability).fit(x, y)
        path = tmp_path / f"{kind}-{probability}.skops"
        sio.dump([est], path)
        back = load_skops(path)[0]
        fn = "predict_proba" if probability or kind in ("logreg", "rf") else "decision_function"
        assert np.allclose(getattr(back, fn)(x), getattr(est, fn)(x))


# -- files outside the model folder --------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/passwd", "../../etc/passwd", "/proc/self/environ", "a/../../x"])
def test_model_file_refuses_names_leaving_the_folder(tmp_path, name):
    with pytest.raises(ModelError, match="outside the model folder"):
        model_file(tmp_path, name)


@pytest.mark.parametrize(
    "member", ["model.json", "normalisation.npz", "estimators.skops", "classifier.onnx", "ge2e_0.onnx"]
)
def test_links_leaving_the_folder_are_refused(tmp_path, member):
    model = _copy_default(tmp_path, onnx=member.endswith(".onnx"))
    outside = tmp_path / "outside"
    shutil.copy(model / member, outside)
    (model / member).unlink()
    (model / member).symlink_to(outside)
    with pytest.raises(ModelError, match="outside the model folder"):
        load_model(model)


def test_links_inside_the_folder_and_a_linked_folder_are_fine(tmp_path):
    model = _copy_default(tmp_path)
    (model / "weights").mkdir()
    os.replace(model / "estimators.skops", model / "weights" / "e.skops")
    (model / "estimators.skops").symlink_to("weights/e.skops")
    (tmp_path / "link").symlink_to(model)
    assert load_model(tmp_path / "link")[0].labels_ == read_metadata(model)["labels"]


def _onnx_model(directory: Path, location: str | None) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros(2, np.float32), "w")
    if location is not None:
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("length", "8")):
            e = w.external_data.add()
            e.key, e.value = key, value
        w.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("Add", ["waveform", "w"], ["probabilities"])],
        "g",
        [
            helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    directory.mkdir(exist_ok=True)
    (directory / "model.onnx").write_bytes(m.SerializeToString())
    (directory / "model.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "family": "onnx",
                "labels": ["a", "b"],
                "sampling_rate": 16000,
                "config": {"file": "model.onnx", "sampling_rate": 16000},
            }
        )
    )


@pytest.mark.parametrize("file", ["/etc/passwd", "../../etc/passwd", "/proc/self/environ"])
def test_onnx_config_file_must_stay_inside(tmp_path, file):
    pytest.importorskip("onnxruntime")
    model = tmp_path / "m"
    _onnx_model(model, None)
    meta = json.loads((model / "model.json").read_text())
    meta["config"]["file"] = file
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="outside the model folder"):
        load_model(model)


def test_onnx_external_data_resolves_in_the_model_folder_never_the_cwd(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    model = tmp_path / "m"
    _onnx_model(model, "data.bin")
    # a data.bin in the working directory must not be read (onnxruntime's default for bytes)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.bin").write_bytes(np.full(2, 7, np.float32).tobytes())
    with pytest.raises(ModelError, match="lacks data.bin"):
        load_model(model)
    (model / "data.bin").write_bytes(np.ones(2, np.float32).tobytes())
    clf, _ = load_model(model)
    out = clf.session_.run(None, {"waveform": np.zeros((1, 2), np.float32), "lengths": np.array([2])})[0]
    assert out.tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "link.bin"])
def test_onnx_external_data_outside_is_refused(tmp_path, location):
    pytest.importorskip("onnxruntime")
    model = tmp_path / "m"
    _onnx_model(model, location)
    (tmp_path / "secret.bin").write_bytes(np.full(2, 7, np.float32).tobytes())
    (model / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ModelError, match="outside the model folder"):
        load_model(model)


# -- malformed files -----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["pickle", "text-link", "truncated", "empty"])
def test_unreadable_weight_files_give_one_model_error(tmp_path, content):
    model = _copy_default(tmp_path)
    target = model / "estimators.skops"
    if content == "pickle":
        target.write_bytes(pickle.dumps({"not": "skops"}))
    elif content == "text-link":
        (model / "notes.txt").write_text("hello\n")
        target.unlink()
        target.symlink_to("notes.txt")
    elif content == "truncated":
        target.write_bytes(target.read_bytes()[:200])
    else:
        target.write_bytes(b"")
    with pytest.raises(ModelError, match="not a readable skops file"):
        load_model(model)


@pytest.mark.parametrize("member", ["classifier.onnx", "ge2e_0.onnx"])
def test_unreadable_onnx_graphs_give_one_model_error(tmp_path, member):
    """A damaged exported graph is a ModelError when the model loads, not an onnxruntime traceback
    at the first prediction."""
    model = _copy_default(tmp_path, onnx=True)
    (model / member).write_bytes((model / member).read_bytes()[:300])
    with pytest.raises(ModelError, match=f"{member}.*not a readable ONNX graph"):
        load_model(model)


def test_unreadable_normalisation_file(tmp_path):
    model = _copy_default(tmp_path)
    (model / "normalisation.npz").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ModelError, match="normalisation.npz"):
        load_model(model)


@pytest.mark.parametrize("version", ["1", 1.0, None, True, [1]])
def test_malformed_format_version_says_malformed(tmp_path, version):
    model = _copy_default(tmp_path)
    meta = json.loads((model / "model.json").read_text())
    meta["format_version"] = version
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="format_version field .* is malformed"):
        read_metadata(model)


def test_newer_format_version_says_upgrade(tmp_path):
    model = _copy_default(tmp_path)
    meta = json.loads((model / "model.json").read_text())
    meta["format_version"] = 99
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="upgrade serkit"):
        read_metadata(model)


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    from serkit.artifact import save_model

    model, _ = load_model(DEFAULT_MODEL_DIR)
    # a save killed with SIGKILL: a dead process's marked folder and an old unmarked one
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{dead.stdout.strip()}-abc123.tmp"
    stale.mkdir()
    (stale / "model.json").write_text("{}")
    old_unmarked = tmp_path / ".out.xyz987.tmp"
    old_unmarked.mkdir()
    os.utime(old_unmarked, (0, 0))
    fresh_unmarked = tmp_path / ".out.fresh1.tmp"  # maybe a running older serkit: kept
    fresh_unmarked.mkdir()
    other = tmp_path / ".other.1-abc.tmp"  # another target's: untouched
    other.mkdir()
    save_model(model, tmp_path / "out")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".other.1-abc.tmp", ".out.fresh1.tmp", "out"]
    assert read_metadata(tmp_path / "out")["labels"] == model.labels_
