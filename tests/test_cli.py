"""The `serkit` command end to end on real clips: corpora, train, evaluate, predict (with bad files)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from serkit.cli import main


@pytest.fixture(scope="module")
def manifest(small_manifest):
    return small_manifest


@pytest.fixture(scope="module")
def model_dir(small_model_dir):
    return small_model_dir


def test_corpora_scan_json(emodb_dir, capsys):
    assert main(["corpora", "scan", "emodb", str(emodb_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"corpus", "n_utterances", "labels", "speakers", "problems"}
    assert out["n_utterances"] == 535 and out["labels"]["angry"] == 127 and len(out["speakers"]) == 10


def test_corpora_scan_bad_folder_is_one_line(tmp_path, capsys):
    assert main(["corpora", "scan", "emodb", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_evaluate_writes_the_report(manifest, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--corpus",
            f"manifest:{manifest}",
            "--recipe",
            "egemaps-svm",
            "--protocol",
            "loso",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert {"ua", "wa", "macro_f1", "labels", "confusion", "folds", "protocol", "recipe", "normalisation"} <= set(
        report
    )
    assert [sorted(f["test_speakers"]) for f in report["folds"]] == [["03"], ["10"], ["11"]]
    assert report["labels"] == ["angry", "neutral", "sad"]
    assert report["ua"] > 0.5  # 3 classes: chance is 0.33
    assert report["normalisation"] == "speaker"
    for name in ("report.md", "confusion.png", "predictions.csv"):
        assert (out / name).stat().st_size > 0
    assert "UA" in capsys.readouterr().out


def test_train_info_and_predict(model_dir, emodb_dir, tmp_path, capsys):
    assert main(["info", "--model", str(model_dir)]) == 0
    assert "angry, neutral, sad" in capsys.readouterr().out
    out = tmp_path / "pred.jsonl"
    clip = emodb_dir / "wav" / "16a01Wb.wav"  # speaker 16 was not in training
    assert main(["predict", "--model", str(model_dir), str(clip), "--out", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["label"] in ("angry", "neutral", "sad") and row["error"] == ""
    assert row["p_angry"] + row["p_neutral"] + row["p_sad"] == pytest.approx(1.0)
    from serkit.audio import info

    assert row["start"] == 0.0 and row["end"] == pytest.approx(info(clip).duration, abs=0.01)


def test_predict_folder_with_bad_files_reports_them_and_goes_on(model_dir, emodb_dir, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("16a01Wb.wav", "16a01Tb.wav"):
        shutil.copy(emodb_dir / "wav" / name, folder / name)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("not audio at all\n" * 10)
    good = (emodb_dir / "wav" / "16a01Wb.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(good[:40])
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    with open(out) as fh:
        rows = {r["file"].split("/")[-1]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"16a01Wb.wav", "16a01Tb.wav", "empty.wav", "notes.wav", "truncated.wav"}
    assert rows["16a01Wb.wav"]["error"] == "" and rows["16a01Wb.wav"]["label"]
    assert "empty" in rows["empty.wav"]["error"]
    assert "cannot decode" in rows["notes.wav"]["error"]
    assert rows["truncated.wav"]["error"]
    assert "2 of 5 files predicted, 3 failed" in err
    # --strict turns any failure into a non-zero exit
    assert main(["predict", "--model", str(model_dir), str(folder), "--out", str(out), "--strict", "-q"]) == 1


def test_predict_nothing_readable_fails(model_dir, tmp_path, capsys):
    (tmp_path / "bad.wav").write_text("nope")
    assert main(["predict", "--model", str(model_dir), str(tmp_path / "bad.wav"), "-q"]) == 1
    assert main(["predict", "--model", str(tmp_path / "no-model"), str(tmp_path / "bad.wav")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "example:" in capsys.readouterr().out


def test_speaker_dependent_protocol_needs_the_flag(manifest, tmp_path, capsys):
    args = [
        "evaluate",
        "--corpus",
        f"manifest:{manifest}",
        "--recipe",
        "egemaps-svm",
        "--protocol",
        "random-split:3",
        "--out",
        str(tmp_path / "r"),
        "-q",
    ]
    assert main(args) == 2
    assert "--speaker-dependent" in capsys.readouterr().err
    assert main(args + ["--speaker-dependent"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["speaker_dependent"] is True
    assert "speaker-dependent" in (tmp_path / "r" / "report.md").read_text().lower()


def test_one_spelling_with_the_american_one_accepted():
    """Public names are British (quantise, distil); the CLI also takes --quantize and --distill."""
    from serkit.cli import _parser

    p = _parser()
    for flag in ("--quantise", "--quantize"):
        assert p.parse_args(["export", "m", "--out", "o", flag, "int8"]).quantise == "int8"
    for flag in ("--distil", "--distill"):
        assert p.parse_args(["compress", "m", "--out", "o", flag]).distil is True
