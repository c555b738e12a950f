#!/usr/bin/env bash
# The main job, end to end, on a real corpus: evaluate speaker-independently, train, predict.
set -euo pipefail
DATA=${SERKIT_DATA:-../shared/data}
OUT=${OUT:-out/demo}
SERKIT=${SERKIT:-serkit}
RECIPE=${RECIPE:-compare-svm}
if [ ! -d "$DATA/emodb" ]; then
  echo "serkit demo: no corpus found at '$DATA/emodb'."
  echo "Pass the folder that holds emodb/ (e.g. make demo SERKIT_DATA=/path/to/data), or run on your own data:"
  echo "  $SERKIT evaluate --corpus folder:/path/to/class-folders --recipe $RECIPE --protocol speaker-kfold:5"
  exit 2
fi
mkdir -p "$OUT"
echo "== 1/3 evaluate $RECIPE on EmoDB, leave-one-speaker-out (10 folds)"
$SERKIT evaluate --corpus "emodb:$DATA/emodb" --recipe "$RECIPE" --protocol loso --out "$OUT/report"
echo "== 2/3 train $RECIPE on all of EmoDB"
$SERKIT train --corpus "emodb:$DATA/emodb" --recipe "$RECIPE" --out "$OUT/model" --quiet
echo "== 3/3 predict RAVDESS and TESS clips it has never heard (another language, other speakers)"
files=()
[ -d "$DATA/ravdess-sample" ] && files+=("$DATA/ravdess-sample/Actor_01/03-01-05-01-01-01-01.wav" "$DATA/ravdess-sample/Actor_02/03-01-04-01-01-01-02.wav")
[ -d "$DATA/tess" ] && files+=("$DATA/tess/OAF_angry/OAF_back_angry.flac" "$DATA/tess/YAF_sad/YAF_back_sad.flac")
[ ${#files[@]} -gt 0 ] || files=("$DATA/emodb/wav/03a01Wa.wav")
$SERKIT predict --model "$OUT/model" "${files[@]}" --out "$OUT/predictions.csv" --quiet
column -s, -t < "$OUT/predictions.csv" | cut -c1-160 || cat "$OUT/predictions.csv"
echo
echo "outputs:"
echo "  report      $OUT/report/report.md  (report.json, confusion.png, predictions.csv)"
echo "  model       $OUT/model/model.json"
echo "  predictions $OUT/predictions.csv"
