"""Checks of one knob's value. Each rule returns None when the value is allowed, else what is
allowed (the caller names the knob and the value). :mod:`wmlib.settings` checks a chapter's knobs
with them, and each attack declares the rules of the knobs it reads (``Attack.knobs``)."""
from __future__ import annotations

INF = float("inf")


def integer(lo: int, hi: int | None = None, none: bool = False):
    def check(v):
        if v is None and none:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            return f"an integer in [{lo}, {'∞' if hi is None else hi}]" + (" or None" if none else "")
    return check


def number(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False, none: bool = False):
    def check(v):
        if v is None and none:
            return None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok:
            ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            rng = f"{'(' if lo_open else '['}{lo}, {'∞' if hi == float('inf') else hi}{')' if hi_open else ']'}"
            return f"a number in {rng}" + (" or None" if none else "")
    return check


def choice(options, none: bool = False):
    def check(v):
        if v is None and none:
            return None
        if v not in options:
            return f"one of: {', '.join(sorted(options))}" + (" or None" if none else "")
    return check


def list_of(item, nonempty: bool = True):
    def check(v):
        if not isinstance(v, (list, tuple)) or (nonempty and not v):
            return "a non-empty list"
        for x in v:
            err = item(x)
            if err:
                return f"a list whose items are each {err} (got {x!r})"
    return check


def weights():
    inner = list_of(number(0.0, INF))

    def check(v):
        return inner(v) or (None if len(v) == 4 else "a list of 4 loss weights (α, β, γ, δ)")
    return check


def settings_of(names):
    def check(v):
        if not isinstance(v, dict) or not all(isinstance(s, dict) for s in v.values()):
            return "a dict of entry name -> its settings (a dict)"
        unknown = sorted(set(v) - set(names))
        if unknown:
            return f"a dict whose keys are entries ({', '.join(names)}); unknown: {', '.join(unknown)}"
    return check


def text():
    def check(v):
        if not isinstance(v, str) or not v.strip():
            return "a non-empty string"
    return check




def pair():
    inner = list_of(integer(0))

    def check(v):
        return inner(v) or (None if len(v) == 2 and v[0] != v[1] else "a list of two different class indices")
    return check


def counts(names, none: bool = False):
    """A dict of name (one of ``names``) -> how many, an integer >= 1 (e.g. architectures -> seeds)."""
    def check(v):
        if v is None and none:
            return None
        if not isinstance(v, dict) or not v:
            return "a non-empty dict of name -> count" + (" or None" if none else "")
        unknown = sorted(set(v) - set(names))
        if unknown:
            return f"a dict whose keys are among: {', '.join(sorted(names))}; unknown: {', '.join(unknown)}"
        bad = [k for k, n in v.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1]
        if bad:
            return f"a dict of name -> an integer >= 1 (not for {', '.join(bad)})"
    return check
