"""The one catalogue of configured watermarks: a name, used everywhere (chapters, the comparison, the
integrity chapter, the book's tables), and a function from that watermark's settings to its
:class:`~wmlib.schemes.Scheme`. Each scheme's module registers its own names.

A setting that needs the clean zoo (the function-coupled target: the class no innocent model gives
the triggers) is the entry's ``settle`` hook, called by :func:`settle` before anything is built.

Each scheme's module also declares the rules of the knobs its chapter reads (:func:`register_knobs`),
as each attack declares its own: :mod:`wmlib.settings` checks a chapter's knobs with them.
"""
from __future__ import annotations

from typing import Callable

from .base import Scheme

Make = Callable[[dict], Scheme]
"""An entry's settings -> its configured scheme."""
Settle = Callable[[dict[str, dict], object, object, int], None]
"""``settle(settings, zoo, splits, seed)``: fill in, in place, the settings that the clean ``zoo`` decides, for every
chosen entry that shares the hook (``settings``: entry name -> its settings; ``splits``: the first owner's data)."""
Unsettled = Callable[[dict, int], dict]
"""``unsettled(settings, num_classes)``: the settings with a stand-in where the zoo would decide (e.g. a class that is
no source for the function-coupled target): enough to check them and to make keys' images, never to embed."""

CATALOGUE: dict[str, Make] = {}
_SETTLE: dict[str, Settle] = {}
_UNSETTLED: dict[str, Unsettled] = {}
Check = Callable[[dict, object, bool], None]
"""``check(knobs, spec, own)``: raise a ValueError for knobs that must agree with each other or with the task ``spec``;
``own``: the knobs are the module's own chapter's (a knob two chapters read differently is checked in its own)."""
_KNOBS: dict[str, tuple[dict, Check | None]] = {}


def register(name: str, make: Make, settle: Settle | None = None, unsettled: Unsettled | None = None) -> Make:
    """Add a watermark to the catalogue (see the book's "Add your own scheme"): ``make(settings)``
    builds its scheme from its settings (the comparison's ``schemes[name]``, ``{}`` if none);
    ``settle`` fills in the settings that need the clean zoo, and ``unsettled`` puts a stand-in there
    until then (:func:`build_unsettled`). A name is registered once."""
    if name in CATALOGUE:
        raise ValueError(f"a watermark named {name!r} is in the catalogue already; registered: {', '.join(sorted(CATALOGUE))}")
    if (settle is None) != (unsettled is None):
        raise ValueError(f"watermark {name!r}: a setting the zoo settles needs both settle= and unsettled=")
    CATALOGUE[name] = make
    if settle is not None:
        _SETTLE[name], _UNSETTLED[name] = settle, unsettled
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
        raise ValueError(f"catalogue entry {name!r}: {err}") from None


def build_unsettled(name: str, settings: dict | None, num_classes: int) -> Scheme:
    """:func:`build` before the zoo settled the entry's settings: a stand-in where it will decide (the
    entry's ``unsettled`` hook), for checking the settings and making keys' images, never for embedding."""
    settings = {} if settings is None else settings
    return build(name, _UNSETTLED[name](settings, num_classes) if name in _UNSETTLED else settings)


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


def register_knobs(chapter: str, rules: dict, check: Check | None = None) -> None:
    """A scheme module's knobs: the rule of each knob its chapter ``chapter`` (and a chapter that embeds
    its scheme as a rival) reads (:mod:`wmlib.rules`), and ``check`` for those that must agree."""
    if chapter in _KNOBS:
        raise ValueError(f"the knobs of chapter {chapter!r} are registered already")
    _KNOBS[chapter] = (rules, check)


def knob_rules(chapter: str) -> tuple[dict, dict]:
    """``(others, own)``: the rules every other scheme module declares, and those of ``chapter``'s own
    (empty for a chapter without one): a caller lets ``own`` win where two modules read a knob of the
    same name differently (Zhang et al.'s and Namba & Sakuma's ``kinds``)."""
    others = {k: rule for c, (rules, _) in _KNOBS.items() if c != chapter for k, rule in rules.items()}
    return others, dict(_KNOBS.get(chapter, ({}, None))[0])


def check_knobs(chapter: str, knobs: dict, spec) -> None:
    """Every scheme module's check of the knobs that must agree (``own`` for ``chapter``'s module)."""
    for c, (_, check) in _KNOBS.items():
        if check is not None:
            check(knobs, spec, c == chapter)
