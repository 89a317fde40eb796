"""One module per paper. Every method is a :class:`Scheme` (``make_key`` → ``embed`` → ``verify``);
:func:`watermark` runs the owner's whole side for any of them. The comparison's registry of
configured watermarks is :data:`wmlib.compare.ENTRIES`."""
from __future__ import annotations

from .base import Scheme, Watermarked, watermark
from .function_coupled import FunctionCoupled
from .gradsigns import GradSigns
from .li2019 import Li2019
from .namba2019 import FineTuneKeys, Namba2019
from .zhang2018 import Zhang2018

__all__ = ["Scheme", "Watermarked", "watermark", "Zhang2018", "Namba2019", "FineTuneKeys", "GradSigns", "Li2019",
           "FunctionCoupled"]
