#!/usr/bin/env bash
# Command (2): unit tests, then every notebook under nbmake in the `smoke` profile, then checks on
# what the notebooks recorded. Trains into a fresh cache so nothing stale is reused.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export WMLIB_PROFILE=smoke WMLIB_CACHE="$scratch/cache" WMLIB_RESULTS="$scratch/results" WMLIB_CHECK_RESULTS=1
export PYTHONHASHSEED=0

python -m pytest -q tests/unit notebooks tests/results --nbmake --nbmake-timeout=600 -p no:cacheprovider "$@"
