"""The one catalogue of configured watermarks: a name, used everywhere (chapters, the comparison, the
integrity chapter, the book's tables), and a function from that watermark's settings to its
:class:`~wmlib.schemes.Scheme`. Each scheme's module registers its own names.

A setting that needs the clean zoo (the function-coupled target: the class no innocent model gives
the triggers) is the entry's ``settle`` hook, called by :func:`settle` before anything is built.
"""
from __future__ import annotations

from typing import Callable

from .base import Scheme

Make = Callable[[dict], Scheme]
"""An entry's settings -> its configured scheme."""
Settle = Callable[[dict[str, dict], object, object, int], None]
"""``settle(settings, zoo, splits, seed)``: fill in, in place, the settings that the clean ``zoo`` decides, for every
chosen entry that shares the hook (``settings``: entry name -> its settings; ``splits``: the first owner's data)."""

CATALOGUE: dict[str, Make] = {}
_SETTLE: dict[str, Settle] = {}


def register(name: str, make: Make, settle: Settle | None = None) -> Make:
    """Add a watermark to the catalogue (see the book's "Add your own scheme"): ``make(settings)``
    builds its scheme from its settings (the comparison's ``schemes[name]``, ``{}`` if none);
    ``settle`` fills in the settings that need the clean zoo. A name is registered once."""
    if name in CATALOGUE:
        raise ValueError(f"a watermark named {name!r} is in the catalogue already; registered: {', '.join(sorted(CATALOGUE))}")
    CATALOGUE[name] = make
    if settle is not None:
        _SETTLE[name] = settle
    return make


def build(name: str, settings: dict | None = None, catalogue: dict[str, Make] | None = None) -> Scheme:
    """The scheme of the catalogue's entry ``name`` under ``settings`` (None: ``{}``); an unknown name
    lists the registered ones, and a setting the scheme refuses is named with the entry."""
    catalogue = CATALOGUE if catalogue is None else catalogue
    if name not in catalogue:
        raise ValueError(f"unknown watermark {name!r}; the catalogue holds: {', '.join(catalogue)}")
    try:
        return catalogue[name]({} if settings is None else settings)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"comparison entry {name!r}: {err}") from None


def settle(entries: list[str], settings: dict[str, dict], zoo, splits, seed: int) -> dict[str, dict]:
    """Call every settle hook of the chosen ``entries`` once, with the settings (``settings[name]``,
    changed in place) of the chosen entries that share it, the clean ``zoo``, the first owner's
    ``splits`` and ``seed``. Returns what each hook set: entry -> {setting: value} (empty: nothing
    was left to the zoo)."""
    groups: dict[Settle, dict[str, dict]] = {}
    for name in entries:
        if name in _SETTLE:
            groups.setdefault(_SETTLE[name], {})[name] = settings.setdefault(name, {})
    before = {name: dict(s) for group in groups.values() for name, s in group.items()}
    for hook, group in groups.items():
        hook(group, zoo, splits, seed)
    changed = {name: {k: v for k, v in settings[name].items() if k not in old or old[k] != v} for name, old in before.items()}
    return {name: c for name, c in changed.items() if c}
