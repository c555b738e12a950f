"""Any list of labelled audio as a CSV manifest: ``path,label,speaker[,start,end]``.

The header row names the columns (case and surrounding spaces ignored, any order):

- ``path`` — the audio file, relative to the CSV's folder (or absolute);
- ``label`` — the emotion, as the user spells it (mapped like folder corpora, see
  :mod:`serkit.labels`);
- ``speaker`` — who speaks (required: evaluation is speaker-independent);
- ``start``, ``end`` — optional, seconds; a row with both uses only that part of the file,
  so one long recording can give many utterances; empty cells mean the whole file;
- ``id`` — optional utterance id; by default the path without extension (plus ``@start-end``
  for a part);
- any other column is kept in the utterance's ``extra`` (as text).

A ``.tsv`` file is read tab-separated. ``ROOT`` is the CSV file, or a folder holding
``manifest.csv``. Rows with an empty required cell, a missing audio file or bad times are
listed in ``problems`` (by line number) and skipped.

Example::

    path,label,speaker,start,end
    calls/0001.wav,angry,agent07,12.5,16.0
    calls/0001.wav,neutral,customer3,16.0,19.2
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import CorpusError
from ._common import listed
from .base import ScanResult, Utterance, register_corpus

REQUIRED = ("path", "label", "speaker")
OPTIONAL = ("start", "end", "id")


def _locate(root) -> Path:
    p = Path(root).expanduser()
    if p.is_dir():
        if (p / "manifest.csv").is_file():
            return p / "manifest.csv"
        csvs = sorted(x.name for x in p.glob("*.csv"))
        raise CorpusError(
            f"manifest: folder '{p}' has no manifest.csv; pass the CSV file itself"
            + (f" (CSV files there: {', '.join(csvs[:10])})" if csvs else "")
        )
    if not p.is_file():
        raise CorpusError(
            f"manifest: '{p}' does not exist; pass a CSV file with columns path,label,speaker[,start,end]"
        )
    return p


def _time(cell: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    t = float(cell)  # ValueError handled by the caller, which names the row
    if not math.isfinite(t) or t < 0:
        raise ValueError(cell)
    return t


@register_corpus("manifest")
def scan(root) -> ScanResult:
    """Read a CSV manifest (see the module docstring for its columns).

    Raises
    ------
    CorpusError
        The file is missing, unreadable, empty, or lacks one of the columns path, label, speaker
        (the message lists the columns it found).
    """
    return _scan(root, REQUIRED, keep_missing=False)


def scan_for_prediction(root) -> ScanResult:
    """Read a manifest of audio to predict: only ``path`` is required (``start``/``end`` honoured).

    Rows whose file does not exist are kept (prediction reports them as error rows); ``label``
    and ``speaker`` may be absent or empty (then ``""``).
    """
    return _scan(root, ("path",), keep_missing=True)


def _scan(root, required: tuple, *, keep_missing: bool) -> ScanResult:
    csv_path = _locate(root)
    base = csv_path.parent
    delimiter = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"manifest: cannot read '{csv_path}' ({exc}); save it as UTF-8 CSV") from None
    if not rows:
        raise CorpusError(f"manifest: '{csv_path}' is empty; it needs a header row path,label,speaker[,start,end]")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise CorpusError(
            f"manifest: '{csv_path}' lacks column(s) {', '.join(missing)}; found {', '.join(repr(h) for h in rows[0]) or 'none'}; "
            f"the header row must name {','.join(required)}"
            + (" (start,end optional)" if required == REQUIRED else "")
            + (
                "; is it tab-separated? name it .tsv"
                if delimiter == "," and len(header) == 1 and "\t" in rows[0][0]
                else ""
            )
        )
    col = {name: header.index(name) for name in header if name}
    extra_cols = [h for h in header if h and h not in REQUIRED and h not in OPTIONAL]
    utterances, problems = [], []
    empty, missing_files, bad_times, wrong_width = [], [], [], []
    seen: dict[str, int] = {}
    duplicates = []
    for lineno, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines, e.g. a trailing newline written twice
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        elif len(row) > len(header):
            wrong_width.append(f"line {lineno}")
            continue
        cell = {name: row[i].strip() for name, i in col.items()}
        if not all(cell[c] for c in required):
            empty.append(f"line {lineno}")
            continue
        path = Path(cell["path"]).expanduser()
        path = path if path.is_absolute() else base / path
        if not keep_missing and not path.is_file():
            missing_files.append(f"line {lineno} ({cell['path']})")
            continue
        try:
            start = _time(cell.get("start", ""))
            end = _time(cell.get("end", ""))
        except ValueError:
            bad_times.append(f"line {lineno}")
            continue
        if end is not None and end <= (start or 0.0):
            bad_times.append(f"line {lineno}")
            continue
        uid = cell.get("id") or Path(cell["path"]).with_suffix("").as_posix()
        if not cell.get("id") and (start is not None or end is not None):
            uid += f"@{start if start is not None else 0:g}-{end if end is not None else 'end'}"
        if uid in seen:
            duplicates.append(f"line {lineno} (same id as line {seen[uid]})")
            continue
        seen[uid] = lineno
        utterances.append(
            Utterance(
                id=uid,
                path=str(path),
                label=cell.get("label", ""),
                speaker=cell.get("speaker", ""),
                corpus="manifest",
                start=start,
                end=end,
                extra={c: cell[c] for c in extra_cols if cell[c]},
            )
        )
    if wrong_width:
        problems.append(f"{len(wrong_width)} rows with more cells than the header, skipped: {listed(wrong_width)}")
    if empty:
        problems.append(f"{len(empty)} rows with an empty {', '.join(required)}, skipped: {listed(empty)}")
    if missing_files:
        problems.append(
            f"{len(missing_files)} rows whose audio file does not exist (paths are relative to {base}), "
            f"skipped: {listed(missing_files)}"
        )
    if bad_times:
        problems.append(
            f"{len(bad_times)} rows with start/end that are not seconds ≥ 0 with end > start, skipped: {listed(bad_times)}"
        )
    if duplicates:
        problems.append(f"{len(duplicates)} rows repeat an utterance, skipped: {listed(duplicates)}")
    return ScanResult("manifest", str(csv_path), utterances, problems)
