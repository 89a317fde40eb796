#!/usr/bin/env bash
# Command (1): environment, data, every notebook executed with papermill in the `default` profile,
# the reproduction-status tables, then the HTML book in _build/html. Any failure stops the build.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh
PROFILE="${WMLIB_PROFILE:-default}"
export PYTHONHASHSEED=0  # no MPLBACKEND: the kernels must keep the inline backend so figures are saved

mkdir -p book/executed
times=book/executed/build_times.tsv  # one line per step: the status page shows where a build's time goes
printf 'step\tseconds\tmodels cached before\tmodels added to the cache\n' > "$times"
cached() { { find "${WMLIB_CACHE:-data/cache}" -name '*.pt' 2>/dev/null || true; } | wc -l; }

# this machine's yardstick, shown beside the step times (machines of one name differ by up to 1.7x): ~20 s
python scripts/benchmark_train.py --epochs 1 --repeats 1 --stack 0 --json book/executed/machine_benchmark.json > /dev/null

# the clean-model zoo every chapter verifies against: trained once, before the chapters (or loaded)
state=$(cached); start=$(date +%s)
python -m wmlib.zoo fashion-mnist --profile "$PROFILE"
echo "   zoo: $(( $(date +%s) - start )) s"
printf 'zoo\t%s\t%s\t%s\n' "$(( $(date +%s) - start ))" "$state" "$(( $(cached) - state ))" >> "$times"

# the comparison after the chapters (it loads their models where its configuration is theirs), then the integrity
# chapter (it verifies the comparison's keys and reads its recorded verdicts)
for nb in $(ls notebooks/*.ipynb | grep -v -e comparison.ipynb -e integrity.ipynb) notebooks/comparison.ipynb notebooks/integrity.ipynb; do
  name="$(basename "$nb")"
  state=$(cached); start=$(date +%s)
  # a warm rebuild re-executes only what changed: the notebook, wmlib, the pins, the profile or WMLIB_* (the digest is
  # written after a successful run only; WMLIB_REEXECUTE=1 re-executes every notebook)
  digest="$(python -m wmlib.report digest "$nb" --profile "$PROFILE")"
  if [ -z "${WMLIB_REEXECUTE:-}" ] && [ -f "book/executed/$name" ] && [ "$(cat "book/executed/$name.digest" 2>/dev/null)" = "$digest" ]; then
    echo "== $name unchanged since its last run (profile $PROFILE): kept"
  else
    echo "== executing $name (profile $PROFILE)"
    rm -f "book/executed/$name.digest"
    # papermill exits non-zero if any cell fails; the executed copy is a build product
    python -m papermill "$nb" "book/executed/$name" -p profile "$PROFILE" -k python3 --cwd notebooks \
      --progress-bar --request-save-on-cell-execute
    echo "$digest" > "book/executed/$name.digest"
  fi
  echo "   $name: $(( $(date +%s) - start )) s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$(( $(date +%s) - start ))" "$state" "$(( $(cached) - state ))" >> "$times"
done
python -m wmlib.report check-figures book/executed/*.ipynb
python -m wmlib.report status --profile "$PROFILE" --times "$times" --benchmark book/executed/machine_benchmark.json \
    --out book/executed/status_tables.md
python -m wmlib.settings table book/executed/profile_tables.md

bash scripts/vendor_js.sh
jupyter-book build . --config _config.yml --toc book/_toc.yml -W -n --keep-going
echo "== book: $ROOT/_build/html/index.html"
