"""One module per paper. Every method is a :class:`Scheme` (``make_key`` → ``embed`` → ``verify``);
:func:`watermark` runs the owner's whole side for any of them. :data:`CATALOGUE` holds every
configured watermark under its one name (each module registers its own, in the book's order)."""
from __future__ import annotations

from .base import Scheme, Watermarked, watermark
from .catalogue import CATALOGUE, Make, build, build_unsettled, check_knobs, knob_rules, register, settle
from .zhang2018 import Zhang2018
from .namba2019 import FineTuneKeys, Namba2019
from .li2019 import Li2019
from .gradsigns import GradSigns
from .function_coupled import FunctionCoupled
from .adi import Adi2018
from .frontier_stitching import FrontierStitching
from .ewe import EWE

__all__ = ["Scheme", "Watermarked", "watermark", "CATALOGUE", "Make", "build", "build_unsettled", "check_knobs", "knob_rules",
           "register", "settle",
           "Zhang2018",
           "Namba2019", "FineTuneKeys", "GradSigns", "Li2019", "FunctionCoupled", "Adi2018", "FrontierStitching", "EWE"]
