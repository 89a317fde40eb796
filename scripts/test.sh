#!/usr/bin/env bash
# Command (2): the unit tests and every notebook under nbmake in the `smoke` profile, then checks on what the
# notebooks recorded; the notebooks and checks again in the `paper-smoke` tier, beside them. Trains into fresh caches so
# nothing stale is reused.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh

# the paper-smoke tier's chapters (below): wmlib.profiles.IN_CI, what CI runs (those of IN_CI_BESIDE beside the rest at
# one thread, the others after it at the machine's threads); or with WMLIB_TIER=all every chapter in make book's order,
# after the rest at the machine's threads, as their settings were measured (about 45 minutes more on 2 cores; nbmake's
# limit is per cell, and Namba & Sakuma's embedding cell alone takes ~9 minutes)
case "${WMLIB_TIER:-ci}" in
  ci) tier='from wmlib.profiles import IN_CI as c, IN_CI_BESIDE as b'; cell_limit=600 ;;
  all) tier='from wmlib.settings import PAPER_ORDER as c; b = ()'; cell_limit=1800 ;;
  *) echo "error: WMLIB_TIER is '$WMLIB_TIER'; choose ci (wmlib.profiles.IN_CI, what CI runs) or all (every chapter)" >&2; exit 2 ;;
esac

scratch="$(mktemp -d)"
tier_pid=""
trap '[ -n "$tier_pid" ] && kill -- -"$tier_pid" 2>/dev/null; rm -rf "$scratch"' EXIT
export WMLIB_CHECK_RESULTS=1 PYTHONHASHSEED=0
took() { echo "== $1: $((SECONDS - mark)) s (make test so far: $SECONDS s)"; mark=$SECONDS; }
mark=$SECONDS

# The paper-smoke tier: the notebooks again through the paper profile's code paths (its architectures, encoders,
# schedules, augmentation, key types and zoo recipe) with the sizes cut (wmlib.profiles.PAPER_SMOKE), in its own cache,
# then the checks on what they recorded. Beside the rest: one thread and one Ray core (three one-thread processes on 2
# cores; a 2-thread one among them spins and crawls), in a process group of its own, stopped with this script
tiers="$(python -c "$tier; print(*[x for x in c if x in b], end='|'); print(*[x for x in c if x not in b])")"
beside="${tiers%%|*}" after="${tiers#*|}"
tier_env=(WMLIB_PROFILE=paper-smoke WMLIB_CACHE="$scratch/paper-smoke/cache" WMLIB_RESULTS="$scratch/paper-smoke/results")
tier() {  # [run=exec] tier CHAPTERS [VAR=VALUE ... [setsid]]: the chapters' notebooks and the checks, tier settings
  local chapters="$1"; shift
  ${run:-} env "${tier_env[@]}" WMLIB_CHAPTERS="$chapters" "$@" python -m pytest -q $(printf 'notebooks/%s.ipynb ' $chapters) \
      tests/results --nbmake --nbmake-timeout=$cell_limit -p no:cacheprovider "${pytest_args[@]}"
}
pytest_args=("$@")
if [ -n "$beside" ]; then
  # exec: the background job becomes setsid's process, whose group the trap stops
  run=exec tier "$beside" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WMLIB_CORES=1 setsid > "$scratch/tier.log" 2>&1 &
  tier_pid=$!
fi

# The unit tests and the smoke notebooks on every core: one pytest-xdist worker a core, one thread and one Ray core
# each (tests/parallel.py orders them: notebooks first, longest first); then the checks on what they recorded
export WMLIB_PROFILE=smoke WMLIB_CACHE="$scratch/cache" WMLIB_RESULTS="$scratch/results"
workers="${WMLIB_TEST_WORKERS:-$(python -c 'import os; print(len(os.sched_getaffinity(0)))')}"
case "$workers" in
  ''|*[!0-9]*|0) echo "error: WMLIB_TEST_WORKERS is '$workers'; give a whole number >= 1 (pytest workers)" >&2; exit 2 ;;
esac
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WMLIB_CORES=1 python -m pytest -q tests/unit notebooks --nbmake --nbmake-timeout=600 \
    -p no:cacheprovider -p tests.parallel -n "$workers" --dist loadgroup --no-loadscope-reorder "$@"
took "unit tests and smoke notebooks"
python -m pytest -q tests/results -p no:cacheprovider "$@"
took "checks on the smoke results"

if [ -n "$beside" ]; then
  echo "== the paper-smoke tier beside them ($beside):"
  rc=0
  wait "$tier_pid" || rc=$?
  tier_pid=""
  cat "$scratch/tier.log"
  took "waiting for it"
  [ "$rc" = 0 ] || exit "$rc"
fi
if [ -n "$after" ]; then
  echo "== the paper-smoke tier after them ($after):"
  tier "$after"
  took "the paper-smoke tier after them"
fi
