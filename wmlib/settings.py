"""A chapter's knobs: its profile (:mod:`wmlib.profiles`, plain data) with a notebook's overrides
applied, each knob checked where its meaning lives. An unknown chapter, profile or knob lists the
valid ones; a value out of range says the range; knobs that must agree with each other, or with the
task, are checked together (the schemes' own cross-checks come from their modules).
"""
from __future__ import annotations

import copy
import json
import os
import sys

from . import accuser, attacks, compare, data, integrity, models, schemes, zoo
from .profiles import CHAPTERS, DEFAULT_CUTS, ENV_VAR, HIGHLIGHTS, PROFILES, TABLED, TITLES
from .rules import INF as _INF
from .rules import choice as _choice
from .rules import counts as _counts
from .rules import integer as _int
from .rules import list_of as _list
from .rules import number as _real
from .rules import pair as _pair
from .rules import settings_of as _settings
from .train import OPTIMIZERS, SCHEDULES, check_precision


def names(chapter: str) -> list[str]:
    """The knob names of ``chapter`` (any of them can be set with papermill ``-p``)."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; choose one of: {', '.join(CHAPTERS)}")
    return sorted(CHAPTERS[chapter]["default"])


def _per_dataset(v) -> bool:
    """A knob given per dataset: a dict whose keys are dataset names."""
    return isinstance(v, dict) and bool(v) and all(k in data.REGISTRY for k in v)


def _merge(base: dict, change: dict) -> dict:
    return {**base, **{k: _merge(base[k], v) if isinstance(base.get(k), dict) and isinstance(v, dict) else v
                       for k, v in change.items()}}


def _from_json(knob: str, text: str):
    """A list or dict knob given as text (papermill ``-p kinds '["content", "noise"]'``): its JSON value."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"knob {knob!r} takes a list or dict, given as JSON with papermill's -p "
                         f"(e.g. -p {knob} '[\"a\", \"b\"]') or as YAML with -y; could not read {text!r}: {err.msg}") from None


# dict knobs that a value replaces whole (a set of models); any other dict knob (e.g. 'schemes') is merged into
WHOLE = ("accuser_surrogates", "judge_zoo", "suspects", "zoo_archs")


def resolve(chapter: str, profile: str | None = None, **overrides) -> dict:
    """The knobs of ``chapter`` under ``profile`` (default: ``$WMLIB_PROFILE`` or ``default``),
    with every non-None override applied. Unknown chapters, profiles or knobs list the valid ones."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; choose one of: {', '.join(CHAPTERS)}")
    profile = profile or os.environ.get(ENV_VAR) or "default"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    cfg = copy.deepcopy(CHAPTERS[chapter][profile])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown knob(s) {', '.join(unknown)} for {chapter}; valid: {', '.join(sorted(cfg))}")
    for k, v in overrides.items():  # a dict of settings (e.g. one entry's) changes those settings only
        if isinstance(v, str) and (isinstance(cfg[k], (list, dict)) or cfg[k] is None and v.lstrip().startswith(("{", "["))):
            v = _from_json(k, v)  # papermill's -p hands a list or dict over as its text (also to a knob that is None)
        if v is not None:
            merge = isinstance(cfg[k], dict) and isinstance(v, dict) and not _per_dataset(cfg[k]) and k not in WHOLE
            cfg[k] = _merge(cfg[k], v) if merge else v
    for k, v in cfg.items():  # a knob given per dataset takes the chosen dataset's value
        if _per_dataset(v) and cfg["dataset"] in v:
            cfg[k] = v[cfg["dataset"]]
        elif _per_dataset(v):
            raise ValueError(f"knob {k!r} has no value for dataset {cfg['dataset']!r}; give it with -p {k} ...")
    cfg["profile"] = profile
    validate(chapter, cfg)
    return cfg


ABLATIONS = ("digits",)  # knob prefixes of ablation runs inside a chapter (see variant)


def variant(chapter: str, cfg: dict, prefix: str) -> dict | None:
    """The knobs of an ablation run inside a chapter: ``cfg`` with every ``{prefix}_{name}`` knob
    that is not None in place of ``name``, or None when ``{prefix}_dataset`` is ``"off"`` (the
    ablation is skipped). It is validated like a main run; a bad value names the ablation's knobs."""
    p = f"{prefix}_"
    if cfg.get(f"{p}dataset") in (None, "off"):
        return None
    out = {k: v for k, v in cfg.items() if not any(k.startswith(f"{a}_") for a in ABLATIONS)}
    out.update({k[len(p):]: v for k, v in cfg.items() if k.startswith(p) and v is not None})
    try:
        validate(chapter, out)
    except ValueError as err:
        raise ValueError(f"the {prefix} ablation (knobs {p}*, each replacing the knob without the prefix): {err}") from None
    return out


# --------------------------------------------------------------------------- knob validation

def _rules(chapter: str) -> dict:
    """Every knob's rule: those the scheme modules declare (the chapter's own module's winning where two read a knob of
    the same name differently), the task's, the comparison's and the integrity chapter's, and each attack's."""
    others, own = schemes.knob_rules(chapter)
    pos_int, pos = _int(1), _real(0.0, _INF, lo_open=True)
    return {
        **others,
        "dataset": _choice(data.REGISTRY), "model": _choice(models.REGISTRY), "target": _int(0),
        "train_limit": _int(10, none=True), "test_limit": _int(10, none=True),
        "thief_fraction": _real(0.0, 1.0, lo_open=True, hi_open=True), "key_fraction": _real(0.0, 1.0, lo_open=True),
        "epochs": pos_int, "batch_size": pos_int, "finetune_epochs": pos_int,
        "ae_epochs": pos_int, "folds": _int(2), "optimizer": _choice(OPTIMIZERS), "finetune_optimizer": _choice(OPTIMIZERS),
        "schedule": _choice(SCHEDULES), "milestones": _list(_int(1), nonempty=False),
        "lr": pos, "finetune_lr": pos, "ae_lr": pos,
        "momentum": _real(0.0, 1.0, hi_open=True), "weight_decay": _real(0.0, _INF), "precision": check_precision,
        "augment": _choice((True, False)), "input_noise_std": _real(0.0, _INF), "key_per_batch": pos_int,
        "percentile": _real(0.0, 100.0, lo_open=True, hi_open=True),
        "prune_rates": _list(_real(0.0, 1.0, hi_open=True)), "sweep_rates": _list(_real(0.0, 1.0, hi_open=True)),
        "budget": _real(0.0, 1.0, hi_open=True), "quant_bits": _int(2, 8), "n_queries": pos_int,
        "alpha": _real(0.0, 1.0, lo_open=True, hi_open=True),
        "zoo_confidence": _real(0.5, 1.0, hi_open=True, none=True), "seed": _int(0),
        "detector_epochs": pos_int, "detector_lr": pos, "patience": _int(1, none=True),
        "perturb_M": pos_int, "perturb_eps": _real(0.0, _INF),
        "transfer_dataset": _choice(data.REGISTRY), "transfer_lr": pos, "overwrite_sources": _pair(),
        "overwrite_target": _int(0), "overwrite_lr": pos, "overwrite_epochs": pos_int,
        # the comparison
        "entries": _list(_choice(schemes.CATALOGUE)), "attacks": _list(_choice(attacks.REGISTRY)), "seeds": _list(_int(0)),
        "knockoff_budgets": _list(pos_int, nonempty=False),
        "reference_thief_attacks": _list(_choice(attacks.REGISTRY), nonempty=False),
        "schemes": _settings(schemes.CATALOGUE),  # each entry's own settings: its scheme checks them
        # the integrity chapter
        "accuser_seeds": _list(_int(0, 99)), "accuser_surrogates": _counts(models.REGISTRY), "judge_zoo": _counts(models.REGISTRY),
        "accuser_key_size": _int(2), "accuser_method": _choice(accuser.METHODS), "accuser_steps": pos_int,
        "accuser_eps": _real(0.0, 1.0, lo_open=True, none=True), "accuser_eps_sweep": _list(_real(0.0, 1.0, lo_open=True)),
        "accuser_goal": _real(0.0, 1.0, lo_open=True), "liu_eps": _real(0.0, 1.0, lo_open=True, none=True),
        "liu_candidates": _int(2), "liu_steps": pos_int,
        "adaptive_lam": _real(0.0, _INF, none=True), "adaptive_lams": _list(_real(0.0, _INF)),
        "adaptive_copy": _counts(models.REGISTRY), "judge_fraction": _real(0.0, 1.0, lo_open=True),
        "accuser_fraction": _real(0.0, 1.0, lo_open=True),
        "paper_threshold": _real(0.0, 1.0, lo_open=True), "alphas": _list(_real(0.0, 1.0, lo_open=True, hi_open=True)),
        "keys_per_claimant": pos_int, "key_counts": _list(pos_int), "honest_keys": pos_int, "judge_sizes": _list(_int(2)),
        # the clean zoo's recipe, cut (None: the profile's; the zoo's own recipe check follows in validate)
        "zoo_archs": _counts(models.REGISTRY, none=True), "zoo_epochs": _int(1, none=True),
        **own,
        # the comparison's attacks check the knobs they read (Attack.knobs); a chapter knob of the same name too
        **{name: rule for attack in attacks.REGISTRY.values() for name, rule in attack.knobs.items()},
    }


def validate(chapter: str, cfg: dict) -> None:
    """Check every knob of a resolved config (range, type, valid names) and the knobs that must
    agree with each other; the first problem raises a ValueError that says what is allowed. The
    main run's knobs are checked before an ablation run's (which inherits them), so that a bad knob is
    reported as the main run's."""
    rules = _rules(chapter)
    for name, value in cfg.items():
        rule = rules.get(name)
        err = rule(value) if rule else None
        if err:
            raise ValueError(f"knob {name!r} must be {err}; got {value!r}")
    k = data.spec(cfg["dataset"]).num_classes
    for name in ("source", "target", "forge_target", "overwrite_target"):
        if cfg.get(name) is not None and cfg[name] >= k:
            raise ValueError(f"knob {name!r} must be a class index in [0, {k - 1}] for {cfg['dataset']}; got {cfg[name]}")
    schemes.check_knobs(chapter, cfg, data.spec(cfg["dataset"]))  # the scheme modules' knobs that must agree
    if "transfer_dataset" in cfg and data.spec(cfg["transfer_dataset"]).num_classes != k:
        raise ValueError(f"knob 'transfer_dataset' must keep the class count of {cfg['dataset']} ({k}), so the thief keeps "
                         f"the head (Wen et al. §5); {cfg['transfer_dataset']} has {data.spec(cfg['transfer_dataset']).num_classes}")
    if cfg.get("transfer_dataset") == cfg["dataset"]:
        raise ValueError(f"knob 'transfer_dataset' must be another task than {cfg['dataset']!r}")
    cut = zoo.recipe_overrides(cfg)
    if cut:  # the chapter's zoo: the zoo's own checks of its recipe
        try:
            zoo.zoo_recipe(cfg["dataset"], cfg["profile"], **cut)
        except ValueError as err:
            raise ValueError(f"knobs {', '.join(k for k in zoo.KNOBS if cfg.get(k) is not None)}: {err}") from None
    for name, fraction in (("accuser_surrogates", "accuser_fraction"), ("judge_zoo", "judge_fraction")):
        if name in cfg:  # a set of clean models trained as a zoo: the zoo's own checks of its recipe
            try:
                zoo.zoo_recipe(cfg["dataset"], cfg["profile"], **dict(cut, archs=cfg[name], data_fraction=cfg[fraction]))
            except ValueError as err:
                raise ValueError(f"knob {name!r}: {err}; got {cfg[name]}") from None
    if "judge_sizes" in cfg and max(cfg["judge_sizes"]) > sum(cfg["judge_zoo"].values()):
        raise ValueError(f"knob 'judge_sizes': {cfg['judge_sizes']} asks for more models than judge_zoo trains "
                         f"({sum(cfg['judge_zoo'].values())}); give sizes up to that, or a larger judge_zoo")
    if "suspects" in cfg:
        try:
            integrity.check_suspects(cfg["suspects"])
        except ValueError as err:
            raise ValueError(f"knob 'suspects': {err}") from None
    if "entries" in cfg:  # every entry with settings, and every chosen one, accepts them and fits the task
        label_keys, chosen = 0, {}
        for name in dict.fromkeys([*cfg["entries"], *cfg["schemes"]]):
            scheme = schemes.build_unsettled(name, cfg["schemes"].get(name, {}), k)  # what the zoo settles: a stand-in
            label_keys += name in cfg["entries"] and scheme.trials == "labels"
            if name in cfg["entries"]:
                chosen[name] = scheme
            try:
                scheme.check(data.spec(cfg["dataset"]))
            except ValueError as err:
                raise ValueError(f"comparison entry {name!r}: {err}") from None
        if "accuser_seeds" in cfg and not label_keys:  # the integrity chapter's false-claim attack
            raise ValueError(f"knob 'entries' must hold at least one label-key entry for the false-claim attack (one whose "
                             f"trial is a key's label, not {', '.join(sorted({sc.trials for sc in chosen.values()}))}); "
                             f"got {cfg['entries']}")
        for name in cfg["attacks"]:  # and every chosen attack accepts its settings on the task
            try:
                attacks.REGISTRY[name].check(cfg, data.spec(cfg["dataset"]))
            except ValueError as err:
                raise ValueError(f"comparison attack {name!r}: {err}") from None
        # the reference toolkit's thief runs a thief's model-side attacks, on its data (those that 'attacks' holds: the
        # two thieves side by side)
        for name in cfg.get("reference_thief_attacks", []):
            a = attacks.REGISTRY[name]
            if a.side != "model" or a.oracle:
                raise ValueError(f"knob 'reference_thief_attacks': {name!r} is not a thief's model-side attack (it is "
                                 f"{'a worst-case search' if a.oracle else a.side + '-side'}): the reference thief's data "
                                 "changes only what an attack trains on")
        # no attack trains or queries on an image that is a chosen entry's key (data.public_share)
        compare.check_public_images(chosen, {n: attacks.REGISTRY[n] for n in cfg["attacks"]}, cfg, cfg["dataset"])
    for prefix in ABLATIONS:
        variant(chapter, cfg, prefix)


# --------------------------------------------------------------------------- the paper profile on this machine (make paper)

# where a paper's dataset is not on the machine, ``make paper`` takes a present one of the same shape and class count: the
# CIFAR-shaped stand-ins for CIFAR-10 / SVHN (and for CIFAR-100 where only its images count: the knockoff's queries), the
# real MNIST subset for MNIST, Fashion-MNIST trousers for Zhang et al.'s EMNIST "m" unrelated keys
SUBSTITUTES = {"cifar10": "fashion-rgb32-standin", "svhn": "mnist5k-rgb32-standin", "cifar100": "mnist5k-rgb32-standin",
               "mnist": "mnist-5k", "emnist-letters": "fashion-mnist"}
_SUBSTITUTE_CLASS = {"emnist-letters": 1}  # the unrelated class in the substitute (the letter "m" is class 12 of 26)
DATASET_KNOBS = ("dataset", "unrelated_dataset", "transfer_dataset", "knockoff_dataset")
PAPER_ORDER = tuple(CHAPTERS)  # the book's order


def paper_plan(chapter: str, present=None) -> tuple[dict, list[str]]:
    """The knobs ``make paper`` sets in ``chapter``'s ``paper`` profile so that it runs on the
    datasets on this machine (``present(name)``; default :func:`wmlib.data.present`): each
    dataset knob whose dataset is absent takes its :data:`SUBSTITUTES` entry, at full size. Returns
    the overrides and one line per substitution; they are checked like any knobs."""
    present = present or data.present
    cfg = resolve(chapter, "paper")
    if "unrelated" in cfg.get("kinds", ()) and cfg.get("unrelated_dataset") is None:  # the paper's choice for the task
        cfg["unrelated_dataset"], cfg["unrelated_class"] = schemes.Zhang2018.from_knobs(
            "unrelated", {**cfg, "source": None}).unrelated_source(cfg["dataset"])
    over, said = {}, []
    for knob in DATASET_KNOBS:
        name = cfg.get(knob)
        if name is None or present(name):
            continue
        sub = SUBSTITUTES.get(name)
        if sub is None or not present(sub):
            raise data.DataUnavailableError(f"{chapter}: {knob} {name} is not on this machine and has no substitute here; "
                                            f"to obtain it: {data.spec(name).how_to_get.format(root=data.data_root())}")
        over[knob] = sub
        if knob == "dataset":  # a knob given per dataset keeps the paper dataset's value (e.g. Namba's thief share)
            over.update({k: v[name] for k, v in CHAPTERS[chapter]["paper"].items() if _per_dataset(v) and name in v})
        if knob == "unrelated_dataset" and "unrelated_class" in cfg:
            over["unrelated_class"] = _SUBSTITUTE_CLASS.get(name, cfg.get("unrelated_class"))
        kind = "a stand-in of real images, not " + name if data.is_standin(sub) else "another real dataset"
        said.append(f"{chapter}: {knob} {name} is not on this machine; {sub} instead ({kind}: its numbers are not the paper's)")
    resolve(chapter, "paper", **over)
    return over, said


# --------------------------------------------------------------------------- the profiles as the book shows them

def _show(v) -> str:
    if isinstance(v, dict):
        return "/".join(f"{k}×{n}" for k, n in v.items()) if all(isinstance(n, int) for n in v.values()) else f"{len(v)}"
    if isinstance(v, (list, tuple)):
        return f"{len(v)}" if len(v) > 4 else "/".join(map(str, v))
    return "auto" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def describe(chapter: str, profile: str) -> str:
    """One line of what ``chapter`` runs under ``profile``, read from its resolved knobs."""
    k = resolve(chapter, profile)
    images = "all" if k.get("train_limit") is None else f"{k['train_limit']:,}"
    parts = [f"{k['dataset']} ({images} training images, thief share {_show(k['thief_fraction'])})", k["model"],
             f"{k['epochs']} epochs of {k['optimizer']} {_show(k['lr'])} ({k['schedule']})"]
    parts += [f"{n} {_show(k[n])}" for n in HIGHLIGHTS[chapter] if n in k]
    return "; ".join(parts)


def full_adds(chapter: str, profile: str) -> list[str]:
    """What ``full`` runs that ``profile`` does not, one line per cut knob of
    :data:`wmlib.profiles.DEFAULT_CUTS` (``default`` only; other profiles are not cuts of ``full``)."""
    if profile != "default":
        return []
    here, full = resolve(chapter, "default"), resolve(chapter, "full")  # per-dataset knobs at the profile's dataset

    def show(v, other) -> str:  # a dict of settings (the comparison's entries): the settings that differ
        if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()):
            return ", ".join(f"{e} {n} {show(x[n], None)}" for e, x in v.items() for n in x if x[n] != other[e][n])
        return "all" if v is None else f"{v:,}" if isinstance(v, int) else _show(v)

    return [f"{k}: {show(here[k], full[k])} here, {show(full[k], here[k])} in full ({why})"
            for k, (_, why) in DEFAULT_CUTS[chapter].items()]


def profiles_table() -> str:
    """A Markdown table: every chapter under every profile (the book's how-to-run page and the README)."""
    rows = ["| chapter | " + " | ".join(f"`{p}`" for p in TABLED) + " |", "|---|" + "---|" * len(TABLED)]
    rows += [f"| {TITLES[c]} | " + " | ".join(describe(c, p) for p in TABLED) + " |" for c in CHAPTERS]
    return "\n".join(rows) + "\n"


README_MARKERS = ("<!-- profiles: generated by `python -m wmlib.settings readme` -->", "<!-- end of profiles -->")


def readme_with_table(text: str) -> str:
    """``text`` (the README) with the block between :data:`README_MARKERS` replaced by :func:`profiles_table`."""
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ValueError(f"the README has no block between {start!r} and {end!r}")
    head, rest = text.split(start, 1)
    return head + start + "\n" + profiles_table() + rest[rest.index(end):]


def main(argv: list[str] | None = None) -> int:
    """``python -m wmlib.settings table [FILE]``: the profiles table; ``readme [FILE]``: rewrite
    its block in the README; ``paper-plan DIR``: one papermill parameter file per chapter for
    ``make paper`` (the ``paper`` profile on the datasets present), and what it substitutes."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m wmlib.settings", description=main.__doc__.splitlines()[0])
    parser.add_argument("what", choices=("table", "readme", "paper-plan"))
    parser.add_argument("path", nargs="?", default=None)
    args = parser.parse_args(argv)
    if args.what == "paper-plan":
        out = Path(args.path or "_build/paper")
        out.mkdir(parents=True, exist_ok=True)
        try:
            plans = {c: paper_plan(c) for c in PAPER_ORDER}
        except (ValueError, data.DataUnavailableError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for chapter, (over, said) in plans.items():
            (out / f"{chapter}.json").write_text(json.dumps({"profile": "paper", **over}))  # JSON is YAML: papermill -f
            print("\n".join(said) or f"{chapter}: the paper's datasets are present")
    elif args.what == "table":
        text = profiles_table()
        Path(args.path).write_text(text) if args.path else print(text, end="")
    else:
        path = Path(args.path or data.REPO_ROOT / "README.md")
        path.write_text(readme_with_table(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
