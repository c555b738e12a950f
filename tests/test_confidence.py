"""Abstention (``min_confidence``) on every prediction path, and temperature scaling saved in a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from serkit.calibration import UNCERTAIN
from serkit.cli import main
from serkit.errors import ConfigError
from serkit.inference import Recognizer

CLIPS = ("16a01Wb.wav", "16a01Tb.wav", "16a02Wb.wav", "16a02Tc.wav", "16b10Lb.wav", "16a01Nb.wav")


@pytest.fixture(scope="module")
def files():
    from tests.conftest import data_dir

    wav = data_dir("emodb") / "wav"
    return [wav / n for n in CLIPS if (wav / n).exists()]


@pytest.fixture(scope="module")
def reference(small_model_dir, files):
    """Predictions without abstention, and a threshold between the clips' top probabilities."""
    table = Recognizer.load(small_model_dir).predict_batch(files)
    top = table[[c for c in table if c.startswith("p_")]].max(axis=1).to_numpy()
    return table, top, float(np.median(top))


def _expected(reference):
    table, top, p_min = reference
    return [UNCERTAIN if t < p_min else lab for t, lab in zip(top, table["label"])]


def test_recognizer_min_confidence(small_model_dir, files, reference):
    table, top, p_min = reference
    assert 0 < (top < p_min).sum() < len(top)  # the threshold splits the clips
    rec = Recognizer.load(small_model_dir, min_confidence=p_min)
    got = rec.predict_batch(files)
    assert got["label"].tolist() == _expected(reference)
    p_cols = [c for c in table if c.startswith("p_")]
    np.testing.assert_allclose(got[p_cols].to_numpy(), table[p_cols].to_numpy())  # probabilities kept
    assert rec.predict_file(files[0])["label"].iloc[0] == _expected(reference)[0]
    assert Recognizer.load(small_model_dir, min_confidence=0.0).predict_batch(files)["label"].tolist() == list(
        table["label"]
    )
    assert rec.abstain(table, p_min)["label"].tolist() == _expected(reference)
    assert rec.abstain(table, None)["label"].tolist() == list(table["label"])


def test_min_confidence_out_of_range_is_a_clear_error(small_model_dir):
    with pytest.raises(ConfigError, match="between 0 and 1"):
        Recognizer.load(small_model_dir, min_confidence=60)


def test_cli_predict_min_confidence(small_model_dir, files, reference, tmp_path, capsys):
    out = tmp_path / "p.csv"
    _, _, p_min = reference
    args = ["predict", "--model", str(small_model_dir), "--min-confidence", str(p_min), "--out", str(out), "-q"]
    assert main([*args, *map(str, files)]) == 0
    import pandas as pd

    assert pd.read_csv(out)["label"].tolist() == _expected(reference)
    assert main(["predict", "--model", str(small_model_dir), "--min-confidence", "2", str(files[0])]) != 0
    assert "between 0 and 1" in capsys.readouterr().err


def test_cli_stream_min_confidence(small_model_dir, files, capsys):
    args = ["stream", "--model", str(small_model_dir), "--file", str(files[0]), "--speed", "0", "--format", "jsonl"]
    assert main([*args, "--window", "1", "--hop", "0.5", "--min-confidence", "1.0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(r["label"] == UNCERTAIN for r in rows if r["error"] == "")  # no window is certain
    assert all(abs(sum(v for k, v in r.items() if k.startswith("p_")) - 1) < 1e-6 for r in rows if not r["error"])


def test_http_min_confidence(small_model_dir, files, reference):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from serkit.serve.app import create_app
    from serkit.serve.settings import Settings

    table, top, p_min = reference
    rec = Recognizer.load(small_model_dir)
    with TestClient(create_app(rec, Settings())) as client:
        for f, want in zip(files, _expected(reference)):
            r = client.post(
                f"/v1/predict?min_confidence={p_min}", files={"file": (f.name, f.read_bytes(), "audio/wav")}
            )
            assert r.status_code == 200, r.text
            assert r.json()["label"] == want
        r = client.post("/v1/predict", files={"file": (files[0].name, files[0].read_bytes(), "audio/wav")})
        assert r.json()["label"] == table["label"].iloc[0]  # no parameter: the top label
        r = client.post(
            "/v1/predict?min_confidence=7", files={"file": (files[0].name, files[0].read_bytes(), "audio/wav")}
        )
        assert r.status_code == 422
        r = client.post(
            "/v1/timeline?window=1&hop=0.5&min_confidence=1",
            files={"file": (files[0].name, files[0].read_bytes(), "audio/wav")},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == UNCERTAIN and all(w["label"] in (UNCERTAIN, "") for w in body["windows"])
        assert sum(body["probabilities"].values()) == pytest.approx(1.0)
        signal, sr = sf.read(files[0], dtype="float32")
        with client.websocket_connect(f"/v1/stream?rate={sr}&window=1&hop=0.5&min_confidence=1") as ws:
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(signal.astype("<f4").tobytes())
            ws.send_text(json.dumps({"type": "end"}))
            msgs = []
            while (m := ws.receive_json())["type"] != "end":
                msgs.append(m)
        assert msgs and all(m["label"] == UNCERTAIN for m in msgs if not m.get("error"))
        with client.websocket_connect(f"/v1/stream?rate={sr}&min_confidence=high") as ws:
            assert ws.receive_json()["type"] == "error"


def test_train_calibrate_saves_and_applies_a_temperature(small_manifest, small_model_dir, files, tmp_path, capsys):
    out = tmp_path / "calibrated"
    spec = f"manifest:{small_manifest}"
    assert main(["train", "--corpus", spec, "--recipe", "egemaps-svm", "--out", str(out), "--calibrate", "-q"]) == 0
    meta = json.loads((out / "model.json").read_text())
    cal = meta["calibration"]
    assert cal["method"] == "temperature" and set(cal["temperature"]) == {"speaker", "none"}
    assert cal["fitted_on"]["protocol"] == "speaker-kfold:3"  # 3 training speakers
    # 36 clips: NLL-optimal T need not lower ECE here (the known-answer tests are in test_calibration)
    assert all(0 <= cal["ece_after"][m] <= 1 and 0 <= cal["ece_before"][m] <= 1 for m in cal["temperature"])
    assert all(t > 0 for t in cal["temperature"].values())

    from serkit.calibration import apply_temperature
    from serkit.models import load_model

    plain, old_meta = load_model(small_model_dir)
    assert "calibration" not in old_meta and plain.temperatures == {}  # old models are unchanged
    model, _ = load_model(out)
    assert model.temperatures == pytest.approx(cal["temperature"])
    signals = [sf.read(f, dtype="float32")[0] for f in files]
    raw = model.set_temperatures(None).predict_proba(signals)
    model.set_temperatures(cal["temperature"])
    np.testing.assert_allclose(
        model.predict_proba(signals), apply_temperature(raw, cal["temperature"]["none"]), atol=1e-9
    )
    capsys.readouterr()
    assert main(["info", "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert "calibrated: temperature" in text and "speaker-kfold:3" in text
    assert main(["info", "--model", str(small_model_dir)]) == 0
    assert "calibrated: no" in capsys.readouterr().out
