"""Combined attacks (Lukas et al., S&P 2022: no single attack removed every watermark they tested,
combined attacks removed all): registered attacks chained, each on the model the one before it left.
Every part but the last must be model-side (it hands on a model); the last may be query-side, or the
last few input preprocessing steps (:mod:`.input_preprocessing`), each query transformed by them in
the chain's order."""
from __future__ import annotations

import torch
from torch import nn

from .base import REGISTRY, Attack, Suspect, Threat, register


class Chain(Attack):
    """``parts`` (names of registered attacks) applied in order; the knobs are theirs, the report
    carries each part's under its name."""

    def __init__(self, parts: list[str], about: str = "", name: str | None = None):
        if len(parts) < 2:
            raise ValueError(f"a chain needs two attacks or more, got {parts}")
        unknown = [p for p in parts if p not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown attack(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(REGISTRY)}")
        from .input_preprocessing import InputPreprocessing

        q = next((i for i, p in enumerate(parts) if REGISTRY[p].side != "model"), len(parts))
        tail = [REGISTRY[p] for p in parts[q:]]
        if len(tail) > 1 and not all(isinstance(a, InputPreprocessing) for a in tail):
            not_model = [a.name for a in tail[:-1]]
            raise ValueError(f"every part of a chain but the last must be model-side, or input preprocessing before input "
                             f"preprocessing; {', '.join(not_model)} is not model-side")
        self.query_tail = len(tail)
        self.parts, self.name = list(parts), name or "+".join(parts)
        self.side = "query" if REGISTRY[parts[-1]].side == "query" else "model"
        self.about = about or " then ".join(REGISTRY[p].about for p in parts)
        self.knobs = {k: rule for p in parts for k, rule in REGISTRY[p].knobs.items()}
        onlys = {REGISTRY[p].only for p in parts} - {None}
        self.only = onlys.pop() if len(onlys) == 1 else None

    def applies_to(self, scheme) -> str | None:
        for p in self.parts:
            why = REGISTRY[p].applies_to(scheme)
            if why:
                return why
        return None

    oracle = property(lambda self: any(REGISTRY[p].oracle for p in self.parts))
    extraction = property(lambda self: any(REGISTRY[p].extraction for p in self.parts))
    answers = property(lambda self: next((REGISTRY[p].answers for p in self.parts if REGISTRY[p].extraction), ""))

    def public_images(self, settings, spec):
        return [i for p in self.parts for i in REGISTRY[p].public_images(settings, spec)]

    def images(self, threat: Threat):
        got = [x for x in (REGISTRY[p].images(threat) for p in self.parts) if x is not None]
        return torch.cat(got) if got else None

    def owner_report(self, suspect: Suspect, threat: Threat, owner) -> dict:
        return {f"{p}:{k}": v for p in self.parts
                for k, v in REGISTRY[p].owner_report(suspect.parts[p], threat, owner).items()}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        report, parts = {}, {}
        steps = self.parts if self.query_tail < 2 else self.parts[:-self.query_tail]
        for i, p in enumerate(steps):
            suspect = REGISTRY[p].apply(model, threat)
            report.update({f"{p}:{k}": v for k, v in suspect.report.items()})
            parts[p] = suspect
            if i < len(self.parts) - 1:
                model = suspect.oracle.model
        if self.query_tail >= 2:  # input preprocessing steps, each query through them in order
            from ..verify import Oracle
            from .input_preprocessing import PreprocessedOracle

            names = self.parts[-self.query_tail:]
            transforms = [REGISTRY[p].make(threat.settings) for p in names]

            def chained(x: torch.Tensor) -> torch.Tensor:
                for t in transforms:
                    x = t(x)
                return x
            suspect = Suspect(PreprocessedOracle(Oracle(model), chained, "+".join(names)))
            parts.update({p: Suspect(suspect.oracle) for p in names})
        made = [s.parts["images"] for s in parts.values() if s.parts.get("images") is not None]
        # the chain acted if any part did (a part with nothing to act on hands its model on unchanged)
        report["acted"] = any(s.report.get("acted", True) for s in parts.values())
        return Suspect(suspect.oracle, report, {**parts, **({"images": torch.cat(made)} if made else {})})


# The comparison's combined attacks are fixed here, before any matrix, and never chosen by a measured result.
# Ours, stated in advance: fine-pruning, whose dormant channels are where a backdoor key lives (Liu et al.), then
# distillation of the pruned model into a fresh one, which inherits only what the API answers on task images.
register(Chain(["fine-pruning", "distillation"],
               "fine-pruning, then the pruned model's API distilled into a fresh model (a chain stated in advance)"))
# Lukas et al.'s five CIFAR-10 chains (WRT's combined_attack configs), "smoothing" their Gaussian one (std 0.5)
REFERENCE_CHAINS = (["transfer-learning", "input-smoothing-gaussian"],
                    ["weight-shifting", "input-smoothing-gaussian"],
                    ["weight-shifting", "fine-pruning", "input-smoothing-gaussian"],
                    ["weight-shifting", "input-flip", "input-smoothing-gaussian"],
                    ["adversarial-training", "rtal"])
for _parts in REFERENCE_CHAINS:
    _chain = Chain(_parts, "the reference toolkit's chain: " + " then ".join(REGISTRY[p].about for p in _parts))
    _chain.question, _chain.family = "survives the reference toolkit's five chains", True
    register(_chain)
