#!/usr/bin/env bash
# The main job, end to end, on a real corpus: evaluate speaker-independently, train, predict.
set -euo pipefail
DATA=${SERKIT_DATA:-../shared/data}
OUT=${OUT:-out/demo}
SERKIT=${SERKIT:-serkit}
RECIPE=${RECIPE:-compare-svm}
mkdir -p "$OUT"
echo "== 0/3 the shipped default model (6 classes, trained on seven corpora in six languages): serkit predict with no --model"
$SERKIT info
clips=(examples/audio/*.flac)
[ -d "$DATA/tess" ] && clips+=("$DATA/tess/OAF_angry/OAF_bite_angry.flac" "$DATA/tess/YAF_sad/YAF_date_sad.flac")
[ -d "$DATA/ravdess-sample" ] && clips+=("$DATA/ravdess-sample/Actor_01/03-01-05-01-01-01-01.wav")
[ -d "$DATA/emodb" ] && clips+=("$DATA/emodb/wav/03a01Wa.wav" "$DATA/emodb/wav/03a02Ta.wav")
$SERKIT predict "${clips[@]}" --out "$OUT/default-predictions.csv" --quiet
"$(dirname "$SERKIT")/python" - "$OUT/default-predictions.csv" <<'PY'
import sys, pandas as pd
t = pd.read_csv(sys.argv[1], keep_default_na=False)
p = [c for c in t.columns if c.startswith("p_")]
print(f"  {'file':34s} {'label':9s} " + " ".join(f"{c[2:]:>7s}" for c in p))
for _, r in t.iterrows():
    name = "/".join(r["file"].split("/")[-2:])
    print(f"  {name[-34:]:34s} {r['label'] or 'ERROR':9s} " + " ".join(f"{float(r[c] or 0):7.2f}" for c in p))
print("  (examples/audio/*: synthetic speech, no real emotion; corpus clips were in the model's training data:")
print("   its honest, unseen-corpus scores are the 'loco' lines of `serkit info` above)")
PY
if [ ! -d "$DATA/emodb" ]; then
  echo "serkit demo: no corpus found at '$DATA/emodb', so the evaluate/train steps are skipped."
  echo "Pass the folder that holds emodb/ (e.g. make demo SERKIT_DATA=/path/to/data), or run on your own data:"
  echo "  $SERKIT evaluate --corpus folder:/path/to/class-folders --recipe $RECIPE --protocol speaker-kfold:5"
  exit 0
fi
echo "== 1/3 evaluate $RECIPE on EmoDB, leave-one-speaker-out (10 folds)"
$SERKIT evaluate --corpus "emodb:$DATA/emodb" --recipe "$RECIPE" --protocol loso --out "$OUT/report"
echo "-- a few of its held-out predictions (each speaker predicted by a model that never heard them):"
"$(dirname "$SERKIT")/python" - "$OUT/report/predictions.csv" <<'PY'
import sys, pandas as pd
t = pd.read_csv(sys.argv[1], dtype=str)
rows = t.sample(8, random_state=0)  # a random draw: errors included
for _, r in rows.iterrows():
    print(f"  speaker {r['speaker']}  {r['path'].split('/')[-1]:14s} true {r['true']:8s} predicted {r['pred']}")
PY
echo "== 2/3 train $RECIPE on all of EmoDB"
$SERKIT train --corpus "emodb:$DATA/emodb" --recipe "$RECIPE" --out "$OUT/model" --quiet
echo "== 3/3 predict clips from other corpora (English, other microphones: cross-corpus, expect far lower accuracy)"
files=()
[ -d "$DATA/ravdess-sample" ] && files+=("$DATA/ravdess-sample/Actor_01/03-01-05-01-01-01-01.wav" "$DATA/ravdess-sample/Actor_02/03-01-04-01-01-01-02.wav")
[ -d "$DATA/tess" ] && files+=("$DATA/tess/OAF_angry/OAF_back_angry.flac" "$DATA/tess/YAF_sad/YAF_back_sad.flac")
[ ${#files[@]} -gt 0 ] || files=("$DATA/emodb/wav/03a01Wa.wav")
$SERKIT predict --model "$OUT/model" "${files[@]}" --out "$OUT/predictions.csv" --quiet
"$(dirname "$SERKIT")/python" - "$OUT/predictions.csv" <<'PY'
import sys, pandas as pd
t = pd.read_csv(sys.argv[1], keep_default_na=False)
p = [c for c in t.columns if c.startswith("p_")]
for _, r in t.iterrows():
    top = ", ".join(f"{c[2:]} {float(r[c]):.2f}" for c in sorted(p, key=lambda c: -float(r[c] or 0))[:3])
    print(f"  {r['file'].split('/')[-1]:32s} {r['label'] or 'ERROR ' + r['error']:10s} ({top})")
PY
echo
echo "outputs:"
echo "  report      $OUT/report/report.md  (report.json, confusion.png, predictions.csv)"
echo "  model       $OUT/model/model.json"
echo "  predictions $OUT/predictions.csv"
