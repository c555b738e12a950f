"""The evaluation ``Report``: pooled and per-fold metrics and every test prediction, rendered to
JSON, Markdown, a PNG confusion matrix and a predictions CSV (and read back from them).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..cache import atomic_write_bytes, atomic_write_text
from ..errors import ConfigError
from ..jsonio import json_default

__all__ = ["Report", "REPORT_FORMAT", "prediction_row"]

#: version of the ``report.json`` layout
REPORT_FORMAT = 1


def prediction_row(u, *, fold: int, true: str, pred: str, labels, proba) -> dict:
    """One row of ``predictions.csv``: the utterance, its fold, true and predicted label, ``p_<label>`` columns."""
    return {
        "id": u.id,
        "path": u.path,
        "start": u.start,
        "end": u.end,
        "speaker": str(u.speaker),
        "corpus": u.corpus,
        "fold": fold,
        "true": true,
        "pred": pred,
        **{f"p_{lab}": float(v) for lab, v in zip(labels, proba)},
    }


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _md(text) -> str:
    """Make a value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass
class Report:
    """The result of one evaluation: pooled and per-fold metrics, and every test prediction.

    Attributes
    ----------
    protocol : str
        Protocol name (``"loso"``, ``"speaker-kfold:5"``, …).
    speaker_dependent : bool
        ``True`` when speakers appear in both training and test (``random-split``).
    labels : list of str
        Column order of the confusion matrix and of the ``p_<label>`` prediction columns.
    metrics : dict
        Pooled metrics over all test predictions, as returned by :func:`metrics`.
    folds : list of dict
        Per fold: ``fold, test_speakers, test_corpora, n_train, n_test, ua, wa, macro_f1, fit_seconds,
        predict_seconds, missing_train_labels`` and, when both adaptation modes were run,
        ``ua_by_mode`` (``{"none": ua, "speaker": ua}``); ``ece_by_mode`` (top-label ECE of each mode's
        probabilities on the fold's test clips, :func:`serkit.calibration.ece`).
    predictions : pandas.DataFrame
        One row per test utterance: ``id, path, start, end, speaker, corpus, fold, true, pred,
        p_<label>...``.
    recipe : dict or str or None
        The recipe (or its name) that built the models.
    normalisation : str or None
        The feature normalisation the models used (``"global"``, ``"speaker"``, …).
    seconds : float
        Wall-clock time of the evaluation.
    adaptation : dict or None
        With ``evaluate(..., report_both=True)``: ``{"none": {ua, wa, macro_f1, headline}, "speaker":
        {...}}`` — pooled metrics without and with per-speaker adaptation; ``headline`` is true for the
        mode the headline numbers come from (both when adaptation changed nothing). Every value is a
        dict of metrics, so callers may iterate ``adaptation.items()``.
    protocol_info : dict
        The protocol's parameters (seed, K, held-out speakers).
    extra : dict
        Anything else worth keeping (JSON-able).
    calibration : dict or None
        How far the probabilities can be trusted (:mod:`serkit.calibration`): ``{"calibrated": bool,
        "modes": {mode: {ece, brier, nll, n_bins, reliability {confidence, accuracy, count}, coverage
        [{min_confidence, coverage, n, accuracy, ua}]}}}`` for each mode scored (``"none"`` single
        utterance, ``"speaker"`` adapted), pooled over folds; with ``evaluate(calibrate=True)`` also
        ``"before"`` ``{mode: {ece, brier, nll}}`` without temperature scaling.
    fewshot : dict or None
        The ``fewshot:K`` protocol (:mod:`serkit.evaluation.fewshot`): ``{shots, episodes, seed,
        held_out, rule, pooled: {enrolled|zero_shot|svm: {ua|wa|macro_f1: {mean, ci95, n, values}}}}``;
        each fold has the same per method under ``folds[i]["fewshot"]``.
    """

    protocol: str
    speaker_dependent: bool
    labels: list[str]
    metrics: dict
    folds: list[dict] = field(default_factory=list)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    recipe: dict | str | None = None
    normalisation: str | None = None
    seconds: float = 0.0
    adaptation: dict | None = None
    protocol_info: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    calibration: dict | None = None
    fewshot: dict | None = None

    # -- headline numbers -------------------------------------------------------------------------
    @property
    def ua(self) -> float:
        """Unweighted accuracy (mean per-class recall) of the pooled predictions."""
        return self.metrics["ua"]

    @property
    def wa(self) -> float:
        """Weighted accuracy (plain accuracy) of the pooled predictions."""
        return self.metrics["wa"]

    @property
    def macro_f1(self) -> float:
        return self.metrics["macro_f1"]

    @property
    def confusion(self) -> np.ndarray:
        """[shape=(n_labels, n_labels)] counts, rows = true, columns = predicted."""
        return np.asarray(self.metrics["confusion"], dtype=np.int64)

    @property
    def n_utterances(self) -> int:
        return int(self.metrics.get("n", len(self.predictions)))

    @property
    def n_speakers(self) -> int:
        """Number of distinct speakers in the test sets."""
        if len(self.predictions) and "speaker" in self.predictions:
            return int(self.predictions["speaker"].nunique())
        return len({s for f in self.folds for s in f.get("test_speakers", [])})

    def fold_summary(self) -> dict:
        """Mean and standard deviation of the per-fold UA, WA and macro-F1 (how much speakers differ)."""
        out = {}
        for key in ("ua", "wa", "macro_f1"):
            values = [f[key] for f in self.folds if key in f]
            if values:
                out[f"{key}_mean"] = float(np.mean(values))
                out[f"{key}_std"] = float(np.std(values))
        return out

    # -- rendering ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able summary (everything except the predictions table)."""
        m = self.metrics
        return {
            "format": REPORT_FORMAT,
            "protocol": self.protocol,
            "speaker_dependent": bool(self.speaker_dependent),
            "protocol_info": dict(self.protocol_info),
            "recipe": self.recipe,
            "normalisation": self.normalisation,
            "labels": list(self.labels),
            "ua": m["ua"],
            "wa": m["wa"],
            "macro_f1": m["macro_f1"],
            "per_class": m["per_class"],
            "confusion": m["confusion"],
            "confusion_normalised": m["confusion_normalised"],
            "n_utterances": self.n_utterances,
            "n_speakers": self.n_speakers,
            "n_folds": len(self.folds),
            "fold_summary": self.fold_summary(),
            "folds": [dict(f) for f in self.folds],
            "adaptation": self.adaptation,
            "calibration": self.calibration,
            **({"fewshot": self.fewshot} if self.fewshot else {}),
            "seconds": float(self.seconds),
            "extra": dict(self.extra),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=json_default)

    @classmethod
    def from_dict(cls, d: dict, predictions: pd.DataFrame | None = None) -> Report:
        """Rebuild a report from :meth:`to_dict` output (and optionally its predictions table)."""
        missing = [k for k in ("protocol", "labels", "ua", "wa", "macro_f1", "confusion") if k not in d]
        if missing:
            raise ConfigError(f"not a serkit evaluation report: keys {missing} are missing")
        labels = list(d["labels"])
        pooled = {
            "ua": d["ua"],
            "wa": d["wa"],
            "macro_f1": d["macro_f1"],
            "per_class": d.get("per_class", {}),
            "confusion": d["confusion"],
            "confusion_normalised": d.get("confusion_normalised", []),
            "labels": labels,
            "n": d.get("n_utterances", int(np.sum(d["confusion"]))),
        }
        return cls(
            protocol=d["protocol"],
            speaker_dependent=bool(d.get("speaker_dependent", False)),
            labels=labels,
            metrics=pooled,
            folds=list(d.get("folds", [])),
            predictions=predictions if predictions is not None else pd.DataFrame(),
            recipe=d.get("recipe"),
            normalisation=d.get("normalisation"),
            seconds=float(d.get("seconds", 0.0)),
            adaptation=d.get("adaptation"),
            calibration=d.get("calibration"),
            fewshot=d.get("fewshot"),
            protocol_info=dict(d.get("protocol_info", {})),
            extra=dict(d.get("extra", {})),
        )

    @classmethod
    def load(cls, path) -> Report:
        """Read a report saved by :meth:`save`: its directory or its ``report.json``.

        ``predictions.csv`` next to it is read too when present (ids and speakers stay strings).
        """
        p = Path(path)
        json_path = p / "report.json" if p.is_dir() else p
        try:
            d = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no report at '{json_path}'; pass a directory written by Report.save") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"'{json_path}' is not valid JSON ({exc}); re-run the evaluation") from None
        csv = json_path.parent / "predictions.csv"
        predictions = None
        if csv.exists():
            text_cols = ("id", "path", "speaker", "corpus", "true", "pred")
            predictions = pd.read_csv(csv, dtype={c: str for c in text_cols}, keep_default_na=False, na_values=[""])
        return cls.from_dict(d, predictions)

    def to_markdown(self) -> str:
        """Human-readable report: headline metrics, per-class table, confusion matrix, per-fold table."""
        m = self.metrics
        lines = ["# Evaluation report", ""]
        if self.speaker_dependent:
            lines += [
                f"**Warning: speaker-dependent evaluation ({self.protocol}): the same speakers appear in "
                "training and test, so these numbers overestimate accuracy on speakers the model has never "
                "heard. Use 'loso' or 'speaker-kfold:K' for a speaker-independent estimate.**",
                "",
            ]
        kind = "speaker-dependent" if self.speaker_dependent else "speaker-independent"
        summary = self.fold_summary()
        recipe = self.recipe.get("name", "(inline recipe)") if isinstance(self.recipe, dict) else self.recipe
        rows = [
            ("protocol", f"`{self.protocol}` ({kind}, {len(self.folds)} fold{'s' if len(self.folds) != 1 else ''})"),
            ("UA (unweighted accuracy, mean per-class recall)", _fmt_pct(m["ua"])),
            ("WA (weighted accuracy, overall)", _fmt_pct(m["wa"])),
            ("macro-F1", _fmt_pct(m["macro_f1"])),
        ]
        if len(self.folds) > 1 and "ua_mean" in summary:
            rows.append(("UA per fold, mean ± std", f"{_fmt_pct(summary['ua_mean'])} ± {100 * summary['ua_std']:.2f}"))
        rows += [
            ("test utterances / speakers", f"{self.n_utterances} / {self.n_speakers}"),
            ("labels", ", ".join(self.labels)),
            ("recipe", recipe if recipe is not None else "—"),
            ("normalisation", self.normalisation or "—"),
            ("time", f"{self.seconds:.1f} s"),
        ]
        lines += ["| | |", "|---|---|"] + [f"| {_md(k)} | {_md(v)} |" for k, v in rows] + [""]

        if self.adaptation:
            lines += ["## Per-speaker adaptation", "", "| mode | UA | WA | macro-F1 |", "|---|---|---|---|"]
            for mode in ("none", "speaker", "domain"):
                if mode in self.adaptation:
                    a = self.adaptation[mode]
                    star = " (headline)" if a.get("headline") else ""
                    lines.append(
                        f"| {mode}{star} | {_fmt_pct(a['ua'])} | {_fmt_pct(a['wa'])} | {_fmt_pct(a['macro_f1'])} |"
                    )
            if "transductive" in self.extra:
                t = self.extra["transductive"]
                lines.append(f"\nmode `domain`: single utterance after {_md(t['method'])} — {_md(t['note'])}.")
            lines.append("")

        lines += self._fewshot_markdown()
        lines += self._calibration_markdown()

        lines += ["## Per class", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for lab in self.labels:
            c = m["per_class"].get(lab, {})
            lines.append(
                f"| {_md(lab)} | {c.get('precision', 0):.3f} | {c.get('recall', 0):.3f} | "
                f"{c.get('f1', 0):.3f} | {c.get('support', 0)} |"
            )
        lines.append("")

        cm = m["confusion"]
        cmn = m.get("confusion_normalised") or [[0.0] * len(self.labels) for _ in self.labels]
        lines += [
            "## Confusion matrix",
            "",
            "Rows are true labels, columns predicted; each cell is the count (share of the row).",
            "",
            "| true \\ predicted | " + " | ".join(_md(lab) for lab in self.labels) + " |",
            "|---" * (len(self.labels) + 1) + "|",
        ]
        for i, lab in enumerate(self.labels):
            cells = [f"{cm[i][j]} ({cmn[i][j]:.2f})" for j in range(len(self.labels))]
            lines.append(f"| **{_md(lab)}** | " + " | ".join(cells) + " |")
        lines.append("")

        if self.folds:
            lines += [
                "## Folds",
                "",
                "| fold | test speakers | train | test | UA | WA | macro-F1 |",
                "|---|---|---|---|---|---|---|",
            ]
            for f in self.folds:
                spk = f.get("test_speakers", [])
                spk_text = ", ".join(spk) if len(spk) <= 8 else f"{', '.join(spk[:8])}, … ({len(spk)} speakers)"
                lines.append(
                    f"| {f.get('fold')} | {_md(spk_text)} | {f.get('n_train')} | {f.get('n_test')} | "
                    f"{_fmt_pct(f['ua'])} | {_fmt_pct(f['wa'])} | {_fmt_pct(f['macro_f1'])} |"
                )
            lines.append("")
            gaps = [f for f in self.folds if f.get("missing_train_labels")]
            if gaps:
                lines.append(
                    "Folds whose training set lacked a class (that class could not be predicted): "
                    + "; ".join(f"fold {f['fold']}: {', '.join(f['missing_train_labels'])}" for f in gaps)
                    + "."
                )
                lines.append("")
        return "\n".join(lines)

    def _fewshot_markdown(self) -> list[str]:
        fs = self.fewshot or {}
        if not fs.get("pooled"):
            return []
        names = {
            "enrolled": "enrolled (prototypes)",
            "zero_shot": "zero-shot (not enrolled)",
            "svm": "SVM on the K shots",
        }
        lines = [
            f"## Few-shot enrolment ({fs['shots']} clips per class, {fs['episodes']} episodes, held-out "
            f"{fs.get('held_out', 'part')})",
            "",
            "| method | UA | WA | macro-F1 |",
            "|---|---|---|---|",
        ]
        for m, by_key in fs["pooled"].items():
            cells = [f"{100 * by_key[k]['mean']:.2f} ± {100 * by_key[k]['ci95']:.2f}" for k in ("ua", "wa", "macro_f1")]
            lines.append(f"| {_md(names.get(m, m))} | " + " | ".join(cells) + " |")
        lines += ["", f"{_md(fs.get('note', ''))} (± is the 95 % interval over episodes).", ""]
        return lines

    def _calibration_markdown(self) -> list[str]:
        cal = self.calibration or {}
        modes = [m for m in ("none", "speaker") if m in cal.get("modes", {})]
        if not modes:
            return []
        names = {"none": "single utterance", "speaker": "adapted (per speaker)"}
        before = cal.get("before") or {}
        scaled = "temperature-scaled on each fold's training speakers" if cal.get("calibrated") else "uncalibrated"
        lines = [
            "## Confidence",
            "",
            f"Probabilities are {scaled}. ECE: expected calibration error of the top label "
            f"({cal['modes'][modes[0]].get('n_bins', 15)} equal-width bins; 0 = a top probability of p is right "
            "a share p of the time); Brier and NLL: lower is better. See reliability.png.",
            "",
            "| mode | ECE | Brier | NLL |" + (" ECE before | Brier before | NLL before |" if before else ""),
            "|---|---|---|---|" + ("---|---|---|" if before else ""),
        ]
        for m in modes:
            c = cal["modes"][m]
            row = f"| {names[m]} | {c['ece']:.4f} | {c['brier']:.4f} | {c['nll']:.4f} |"
            if before:
                b = before.get(m, {})
                row += "".join(f" {b[k]:.4f} |" if k in b else " — |" for k in ("ece", "brier", "nll"))
            lines.append(row)
        lines += [
            "",
            "Coverage–accuracy: rows whose top probability is below P would be labelled `uncertain` "
            "(`--min-confidence P`); coverage is the share kept, accuracy and UA are over the kept rows.",
            "",
            "| mode | P | coverage | accuracy | UA |",
            "|---|---|---|---|---|",
        ]
        for m in modes:
            for r in cal["modes"][m].get("coverage", []):
                acc = "—" if r["n"] == 0 else _fmt_pct(r["accuracy"])
                ua = "—" if r["n"] == 0 else _fmt_pct(r["ua"])
                lines.append(f"| {names[m]} | {r['min_confidence']:.2f} | {_fmt_pct(r['coverage'])} | {acc} | {ua} |")
        return [*lines, ""]

    def plot_reliability(self, path) -> Path:
        """Write a PNG reliability diagram: per mode, accuracy against confidence per bin (and the bins' counts).

        Raises
        ------
        ConfigError
            The report has no calibration numbers (made before they existed).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        cal = self.calibration or {}
        modes = [m for m in ("none", "speaker") if m in cal.get("modes", {})]
        if not modes:
            raise ConfigError("this report has no calibration numbers; re-run the evaluation with this serkit")
        names = {"none": "single utterance", "speaker": "adapted"}
        fig = Figure(figsize=(4.6 * len(modes), 4.8))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(modes), squeeze=False)[0]
        for ax, m in zip(axes, modes):
            c = cal["modes"][m]
            n_bins = int(c.get("n_bins", 15))
            edges = np.linspace(0, 1, n_bins + 1)
            acc = np.array([np.nan if v is None else v for v in c["reliability"]["accuracy"]], dtype=float)
            conf = np.array([np.nan if v is None else v for v in c["reliability"]["confidence"]], dtype=float)
            count = np.asarray(c["reliability"]["count"], dtype=float)
            width = 1.0 / n_bins
            ax.bar(
                edges[:-1],
                np.nan_to_num(acc),
                width=width,
                align="edge",
                color="#4c72b0",
                edgecolor="white",
                label="accuracy",
            )
            gap_lo, gap = np.nan_to_num(np.minimum(acc, conf)), np.nan_to_num(np.abs(conf - acc))
            ax.bar(
                edges[:-1],
                gap,
                bottom=gap_lo,
                width=width,
                align="edge",
                facecolor="none",
                edgecolor="#c44e52",
                hatch="//",
                label="gap to mean confidence",
            )
            ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
            share = count / max(count.sum(), 1)
            ax.step(edges[:-1], share, where="post", color="grey", lw=1, label="share of rows")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("top probability (confidence)")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{names[m]}: ECE {c['ece']:.3f}")
            ax.legend(loc="upper left", fontsize=7)
        tag = "temperature-scaled" if cal.get("calibrated") else "uncalibrated"
        fig.suptitle(f"{self.protocol}: reliability ({tag})")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def plot_confusion(self, path) -> Path:
        """Write a PNG of the confusion matrix: counts and row-normalised side by side.

        Parameters
        ----------
        path : str or Path
            Where to write the PNG (atomically).

        Returns
        -------
        Path
        """
        # Figure + Agg canvas directly rather than pyplot: no global state, no GUI backend, thread-safe.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        labels = list(self.labels)
        n = len(labels)
        cm = np.asarray(self.metrics["confusion"], dtype=float).reshape(n, n)
        cmn = np.asarray(self.metrics.get("confusion_normalised") or np.zeros((n, n)), dtype=float).reshape(n, n)
        side = max(3.5, 0.6 * n + 1.5)
        fig = Figure(figsize=(2 * side + 1, side + 0.8))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        panels = [
            (axes[0], cm, "counts", "{:.0f}", cm.max() if cm.size else 1.0),
            (axes[1], cmn, "row-normalised (recall on the diagonal)", "{:.2f}", 1.0),
        ]
        fontsize = 9 if n <= 8 else 7
        for ax, mat, title, fmt, vmax in panels:
            im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(vmax, 1e-12))
            ax.set_title(title)
            ax.set_xticks(range(n), labels, rotation=45, ha="right")
            ax.set_yticks(range(n), labels)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            for i in range(n):
                for j in range(n):
                    dark = mat[i, j] > 0.5 * vmax
                    ax.text(
                        j,
                        i,
                        fmt.format(mat[i, j]),
                        ha="center",
                        va="center",
                        fontsize=fontsize,
                        color="white" if dark else "black",
                    )
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        tag = " — SPEAKER-DEPENDENT" if self.speaker_dependent else ""
        fig.suptitle(
            f"{self.protocol}{tag}: UA {_fmt_pct(self.ua)}, WA {_fmt_pct(self.wa)}, macro-F1 {_fmt_pct(self.macro_f1)}"
        )
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def save(self, directory) -> Path:
        """Write ``report.json``, ``report.md``, ``confusion.png``, ``reliability.png`` (when the report has
        calibration numbers) and ``predictions.csv`` into ``directory``.

        Each file is written atomically, so a reader never sees a half-written report.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "report.json", self.to_json() + "\n")
        atomic_write_text(d / "report.md", self.to_markdown())
        self.plot_confusion(d / "confusion.png")
        if (self.calibration or {}).get("modes"):
            self.plot_reliability(d / "reliability.png")
        atomic_write_text(d / "predictions.csv", self.predictions.to_csv(index=False))
        return d

    def __repr__(self) -> str:
        dep = ", SPEAKER-DEPENDENT" if self.speaker_dependent else ""
        return (
            f"Report({self.protocol}{dep}: UA={self.ua:.4f} WA={self.wa:.4f} macro_f1={self.macro_f1:.4f}, "
            f"{self.n_utterances} utterances, {len(self.folds)} folds)"
        )
