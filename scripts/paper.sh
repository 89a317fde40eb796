#!/usr/bin/env bash
# make paper: every chapter in the `paper` profile (the papers' datasets, models and epochs; meant for a GPU) on the
# datasets this machine has: where one is absent it runs on a present one of the same shape at full size and says so
# (python -m wmlib.settings paper-plan). Prints each chapter's wall time and the device; the executed notebooks, the
# plan and the times go to $WMLIB_PAPER_OUT (default _build/paper), the recorded results to data/results/*-paper-*.json.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh
export PYTHONHASHSEED=0
out="${WMLIB_PAPER_OUT:-_build/paper}"
mkdir -p "$out"
device="$(python -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only (no CUDA device): expect days, not an hour")')"
echo "== make paper on: $device"
python -m wmlib.settings paper-plan "$out" | tee "$out/plan.txt"

times="$out/times.tsv"
printf 'chapter\tseconds\tdevice\n' > "$times"
# the chapters' order of make book: the comparison loads nothing of theirs but its integrity chapter reads its record
for chapter in zhang2018 namba2019 li2019 gradsigns function_coupled comparison integrity; do
  echo "== $chapter (profile paper, $(cat "$out/$chapter.json"))"
  start=$(date +%s)
  python -m papermill "notebooks/$chapter.ipynb" "$out/$chapter.ipynb" -f "$out/$chapter.json" -k python3 --cwd notebooks \
    --progress-bar --request-save-on-cell-execute
  printf '%s\t%s\t%s\n' "$chapter" "$(( $(date +%s) - start ))" "$device" >> "$times"
  echo "   $chapter: $(( $(date +%s) - start )) s on $device"
done
echo "== make paper: seconds per chapter on $device (also in $times)"
column -t -s $'\t' "$times"
awk -F'\t' 'NR > 1 { s += $2 } END { printf "total: %d min\n", s / 60 }' "$times"
