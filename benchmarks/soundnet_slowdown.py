"""SoundNet slowdown sweep: how well frozen SoundNet features transfer when the speech is played slower.

SoundNet-8 was trained on the sound of videos at 22 050 Hz. Speech read at ``22050 * k`` Hz and
fed to it as 22 050 Hz is played ``k`` times slower (pitch and formants ``log2(k)`` octaves lower,
``k`` times more frames per second of speech). Each cell below is the UA (per-speaker standardised,
the "adapted" mode) of the ``soundnet-linear`` pipeline (mean+std pooled layers, linear SVM at a
fixed C) for one slowdown and one set of layers, on EmoDB (7 classes) under a speaker-independent
protocol: ``speaker-kfold:5`` by default, the protocol on which ``soundnet-linear`` and
``soundnet-finetune`` chose their settings; ``--protocol loso`` for the test protocol.

    python benchmarks/soundnet_slowdown.py                              # ~5 min on 2 cores
    python benchmarks/soundnet_slowdown.py --slowdowns 1,3,"2,3,4" --layers conv4 --protocol loso

Corpora are read from ``$SERKIT_DATA`` (default ../shared/data); features are cached like any
serkit features, so a second run only retrains the SVMs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SLOWDOWNS = ["1", "1.5", "2", "3", "4", "2,3,4"]
LAYERS = ["conv4", "conv5", "conv4,conv5", "conv3,conv4,conv5"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--slowdowns",
        default=";".join(SLOWDOWNS),
        help="';'-separated slowdowns; one entry may list several ('2,3,4': concatenated)",
    )
    ap.add_argument("--layers", default=";".join(LAYERS), help="';'-separated layer sets ('conv4,conv5')")
    ap.add_argument("--protocol", default="speaker-kfold:5")
    ap.add_argument("--C", type=float, default=0.01, help="the linear SVM's C (fixed, so that cells compare)")
    ap.add_argument("--out", default="out/bench/soundnet_slowdown.json")
    args = ap.parse_args(argv)

    from serkit.api import evaluate
    from serkit.cache import atomic_write_text

    emodb = DATA / "emodb"
    if not emodb.is_dir():
        print(f"EmoDB not found at '{emodb}'; set SERKIT_DATA to the folder that holds emodb/", file=sys.stderr)
        return 2
    slowdowns = [s for s in args.slowdowns.split(";") if s]
    layer_sets = [s for s in args.layers.split(";") if s]
    print(f"EmoDB, {args.protocol}, UA adapted; linear SVM C={args.C:g} on speaker-standardised mean+std vectors\n")
    header = f"| {'slowdown':9s} | " + " | ".join(f"{ls.replace(',', '+'):>17s}" for ls in layer_sets) + " | time s |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|", flush=True)
    rows = []
    for k in slowdowns:
        t0 = time.perf_counter()
        cells = []
        for layers in layer_sets:
            feature = {
                "name": "soundnet",
                "layer": layers,
                "pool": "mean,std",
                "slowdown": [float(x) for x in k.split(",")],
            }
            overrides = [f"model.features={json.dumps([feature])}", f"model.grid={json.dumps({'C': [args.C]})}"]
            rep = evaluate(
                [f"emodb:{emodb}"], "soundnet-linear", protocol=args.protocol, overrides=overrides, progress=False
            )
            d = rep.to_dict()
            ua = (d.get("adaptation") or {}).get("speaker", {}).get("ua", d["ua"])
            cells.append(ua)
            rows.append(
                {
                    "slowdown": k,
                    "layers": layers,
                    "protocol": args.protocol,
                    "C": args.C,
                    "ua": ua,
                    "ua_single": (d.get("adaptation") or {}).get("none", {}).get("ua"),
                }
            )
        seconds = time.perf_counter() - t0
        print(f"| {k:9s} | " + " | ".join(f"{u:17.3f}" for u in cells) + f" | {seconds:6.1f} |", flush=True)
    atomic_write_text(args.out, json.dumps(rows, indent=2))
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
