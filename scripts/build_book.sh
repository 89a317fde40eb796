#!/usr/bin/env bash
# Command (1): environment, data, every notebook executed with papermill in the `default` profile,
# the reproduction-status tables, then the HTML book in _build/html. Any failure stops the build.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh
PROFILE="${WMLIB_PROFILE:-default}"
export PYTHONHASHSEED=0  # no MPLBACKEND: the kernels must keep the inline backend so figures are saved

# the clean-model zoo every chapter verifies against: trained once, before the chapters (or loaded)
start=$(date +%s)
python -m wmlib.zoo fashion-mnist --profile "$PROFILE"
echo "   zoo: $(( $(date +%s) - start )) s"

mkdir -p book/executed
# the comparison last: it loads the chapters' models where its configuration is theirs
for nb in $(ls notebooks/*.ipynb | grep -v comparison.ipynb) notebooks/comparison.ipynb; do
  name="$(basename "$nb")"
  echo "== executing $name (profile $PROFILE)"
  start=$(date +%s)
  # papermill exits non-zero if any cell fails; the executed copy is a build product
  python -m papermill "$nb" "book/executed/$name" -p profile "$PROFILE" -k python3 --cwd notebooks \
    --progress-bar --request-save-on-cell-execute
  echo "   $name: $(( $(date +%s) - start )) s"
done
python -m wmlib.report check-figures book/executed/*.ipynb
python -m wmlib.report status --profile "$PROFILE" --out book/executed/status_tables.md
python -m wmlib.settings table book/executed/profile_tables.md

bash scripts/vendor_js.sh
jupyter-book build . --config _config.yml --toc book/_toc.yml -W -n --keep-going
echo "== book: $ROOT/_build/html/index.html"
