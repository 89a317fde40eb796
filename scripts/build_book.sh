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
# this machine's yardstick, shown beside the step times (machines of one name differ by up to 1.7x): ~20 s
python scripts/benchmark_train.py --epochs 1 --repeats 1 --stack 0 --json book/executed/machine_benchmark.json > /dev/null

# one schedule across the cores (WMLIB_CORES, default all): every clean zoo's members, then the paper chapters side by
# side, then the comparison (its cells are tasks of the same cluster; it loads the chapters' models where its
# configuration is theirs), then the integrity chapter (it reads the comparison's records). A notebook whose inputs did
# not change since its last successful run is kept (schedule.inputs_digest; WMLIB_REEXECUTE=1 re-executes it); a model
# or cell saved by an interrupted build is loaded. Each notebook's papermill log: book/executed/logs/
python -m wmlib.schedule build --profile "$PROFILE" --out "$ROOT/book/executed"
python -m wmlib.report check-figures book/executed/*.ipynb
python -m wmlib.report status --profile "$PROFILE" --schedule book/executed/schedule.json --benchmark book/executed/machine_benchmark.json \
    --out book/executed/status_tables.md
python -m wmlib.settings table book/executed/profile_tables.md

bash scripts/vendor_js.sh
jupyter-book build . --config _config.yml --toc book/_toc.yml -W -n --keep-going
echo "== book: $ROOT/_build/html/index.html"
