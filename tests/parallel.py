"""How ``make test`` spreads one pytest run over the machine's cores (pytest-xdist, loaded by
scripts/test.sh with ``-p tests.parallel -n <cores> --dist loadgroup --no-loadscope-reorder``).

Each worker runs one test at a time with one thread (two 1-thread loops train 1.29x the images of one
2-thread loop on this workplace's 2 cores, measured). The notebooks go first, longest first, so that
the unit tests fill the gaps at the end instead of a long notebook starting last; a notebook that
reads another's results runs after it on the same worker. The paper-smoke tier runs beside them, a
third one-thread process (scripts/test.sh)."""
import pytest

# smoke notebooks, longest first (1 thread each, fresh cache; measured 2026-12-07 on 2 Xeon cores)
LONGEST_FIRST = ("li2019", "gradsigns", "namba2019", "comparison", "function_coupled", "zhang2018")
# a notebook -> the notebook whose recorded results it reads (the integrity chapter reads the comparison's cells)
READS = {"integrity": "comparison"}


def _notebook(item) -> str | None:
    path = item.path
    return path.stem if path.suffix == ".ipynb" else None


def _rank(item) -> tuple[int, int]:
    nb = _notebook(item)
    if nb is None:
        return (1, 0)  # unit tests and result checks after the notebooks, in their own order
    first = READS.get(nb, nb)
    at = LONGEST_FIRST.index(first) if first in LONGEST_FIRST else len(LONGEST_FIRST)
    return (0, 2 * at + (nb in READS))  # a reader right after what it reads


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: the unit tests keep their order
    for item in items:
        nb = _notebook(item)
        if nb is not None and (nb in READS or nb in READS.values()):
            item.add_marker(pytest.mark.xdist_group(READS.get(nb, nb)))
