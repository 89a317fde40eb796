"""The papers' own numbers, one module per paper, each with the table, figure or section it comes
from: what every chapter's *paper vs ours* table and the status page compare with. Plain data."""
from . import backdoorbench, ewe, function_coupled, gradsigns, li2019, namba2019, wrt, zhang2018

__all__ = ["backdoorbench", "zhang2018", "namba2019", "li2019", "gradsigns", "function_coupled", "wrt", "ewe"]
