"""One module per paper. Every method is a :class:`Scheme`: ``make_key`` → ``embed`` → ``verify``."""
from __future__ import annotations

from .base import Scheme
from .function_coupled import FunctionCoupled
from .gradsigns import GradSigns
from .li2019 import Li2019
from .namba2019 import FineTuneKeys, Namba2019
from .zhang2018 import Zhang2018

REGISTRY: dict[str, type[Scheme]] = {"zhang2018": Zhang2018, "namba2019": Namba2019, "finetune-keys": FineTuneKeys,
                                    "gradsigns": GradSigns, "li2019": Li2019, "function-coupled": FunctionCoupled}


def get(name: str) -> type[Scheme]:
    """The Scheme class registered as ``name``; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}; choose one of: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["Scheme", "Zhang2018", "Namba2019", "FineTuneKeys", "GradSigns", "Li2019", "FunctionCoupled", "REGISTRY", "get"]
