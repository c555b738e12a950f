"""nEMO, a dataset of emotional speech in Polish (Christop, LREC-COLING 2024).

Nine actors (4 female, 5 male, aged 23–28) portray six emotional states reading phonetically
balanced Polish sentences: 4 481 files, about 3 hours (anger 749, fear 736, happiness 749,
neutral 809, sadness 769, surprised 669). 24 kHz wav as published; CC BY-NC-SA 4.0.

Emotions (name in the files → canonical label): anger → angry, fear, happiness → happy,
neutral, sadness → sad, surprised → surprise.

File naming ``samples/KS0_surprised_70.wav``: speaker _ emotion _ sentence index. ``data.tsv``
beside ``samples/`` has one row per file (``file_id`` as published, ending in ``.wav`` whatever
the audio's extension) with the transcript, speaker, gender and age.

Layout: ``ROOT/samples/*.wav`` and ``ROOT/data.tsv`` (``ROOT`` may also be ``samples/`` itself).
Speaker and emotion come from the file name; when ``data.tsv`` is there each utterance's
``extra`` also holds ``text`` (the orthographic transcript), ``gender`` (m/f) and ``age``, a file
the table does not list is kept without them, and a row that disagrees with its file name is
reported. ``extra`` always holds ``sentence`` (the index in the name).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import CorpusError
from ._common import audio_files, drop_duplicate_ids, listed, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion as spelled in the file names → canonical label.
EMOTIONS = {
    "anger": "angry",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
}
#: The corpus' nine speakers.
SPEAKERS = ("EB0", "IC0", "KD0", "KS0", "MK0", "MP0", "SM0", "TP0", "WR0")
#: The metadata table's file name.
TABLE = "data.tsv"

_NAME = re.compile(r"^(?P<speaker>[A-Za-z]+\d*)_(?P<emotion>[a-z]+)_(?P<sentence>\d+)$", re.IGNORECASE)
_GENDERS = {"female": "f", "male": "m", "f": "f", "m": "m"}


def _read_table(path: Path) -> dict[str, dict]:
    """``data.tsv`` as ``{file stem: row}`` (cells stripped: the published speaker ids are padded)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            missing = {"file_id", "emotion", "speaker_id", "gender", "age"} - set(reader.fieldnames or [])
            if missing:
                raise CorpusError(
                    f"nemo: '{path}' lacks the column(s) {', '.join(sorted(missing))}; "
                    "restore the data.tsv published with nEMO, or remove it to scan by file names only"
                )
            rows = [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(
            f"nemo: cannot read '{path}' ({exc}); restore it, or remove it to scan by file names only"
        ) from None
    return {Path(r["file_id"]).stem: r for r in rows if r.get("file_id")}


@register_corpus("nemo")
def scan(root) -> ScanResult:
    """Scan an nEMO folder (the one holding ``samples/`` and ``data.tsv``, or ``samples/`` itself).

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``KS0_surprised_70.wav``, or its
        ``data.tsv`` cannot be read.
    """
    root = require_dir(root, "nemo", "pass the nEMO folder (holding samples/ and data.tsv) or its samples/ folder")
    base = root / "samples" if (root / "samples").is_dir() else root
    table_path = next((p / TABLE for p in (root, base, base.parent) if (p / TABLE).is_file()), None)
    table = _read_table(table_path) if table_path is not None else {}
    files = audio_files(base)
    utterances, problems = [], []
    unnamed, bad_emotion, unlisted, disagree, odd_speakers = [], [], [], [], {}
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        code = m["emotion"].lower()
        if code not in EMOTIONS:
            bad_emotion.append(f)
            continue
        spk = m["speaker"].upper()
        if spk not in SPEAKERS:
            odd_speakers[spk] = odd_speakers.get(spk, 0) + 1
        extra: dict = {"sentence": m["sentence"]}
        row = table.get(f.stem)
        if row is None:
            if table:
                unlisted.append(f)
        else:
            if row["speaker_id"].upper() != spk or row["emotion"].lower() != code:
                disagree.append(f"{f.name} ({row['speaker_id']} {row['emotion']} in {TABLE})")
            extra["text"] = row.get("raw_text", "")
            extra["gender"] = _GENDERS.get(row["gender"].lower(), "unknown")
            extra["age"] = int(row["age"]) if row["age"].isdigit() else None
        utterances.append(
            Utterance(id=f.stem, path=str(f), label=EMOTIONS[code], speaker=spk, corpus="nemo", extra=extra)
        )
    if not utterances:
        raise not_the_corpus(
            "nemo", base, files, "files named like KS0_surprised_70.wav (speaker_emotion_index) in ROOT/samples"
        )
    problems += skipped("files not named like KS0_surprised_70.wav", unnamed, base)
    problems += skipped(f"files with an emotion nEMO does not use (known: {' '.join(EMOTIONS)})", bad_emotion, base)
    if unlisted:
        problems.append(
            f"{len(unlisted)} files not listed in {table_path}; kept without transcript, gender and age: "
            + listed(unlisted, base)
        )
    if disagree:
        problems.append(
            f"{len(disagree)} files whose {TABLE} row disagrees with the file name; the name's speaker and "
            "emotion are used: " + listed(disagree)
        )
    for spk, n in sorted(odd_speakers.items()):
        problems.append(f"speaker {spk!r} ({n} files) is not one of nEMO's nine ({' '.join(SPEAKERS)}); kept")
    return ScanResult("nemo", str(root), drop_duplicate_ids(utterances, problems, "nemo"), problems)
