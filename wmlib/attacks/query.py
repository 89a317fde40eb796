"""Query-side attacks that change what the API sends or answers: fresh input noise, one noise
pattern per trial, and (GradSigns §4.3.3, App. B) score rounding, half-precision scores and score
perturbation; the suite's input-noise, rounding and perturbation attacks."""
from __future__ import annotations

import torch

from .. import rules
from ..train import to_float
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register


class NoisyOracle(Oracle):
    """Query-side attack: the thief's API adds fresh Gaussian noise (std on the [0, 1] scale) to
    every query before it reaches the model, clipped to [0, 1] unless ``clamp=False``."""

    def __init__(self, inner: Oracle, std: float, seed: int = 0, clamp: bool = True):
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.inner, self.std, self.clamp, self.queries = inner, std, clamp, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        xf = to_float(x)
        noisy = xf + self.std * torch.randn(xf.shape, generator=self.generator)
        return self.inner(noisy.clamp(0, 1) if self.clamp else noisy)


class RoundedOracle(Oracle):
    """GradSigns §4.3.3, score rounding (Fig. 4): the thief's API reports every probability rounded
    to ``decimals`` places (the authors' code: 4, 3, 2, 1), which hides the small loss differences
    that Eq. 5 divides by h."""

    def __init__(self, inner: Oracle, decimals: int):
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 7:
            raise ValueError(f"decimals must be an integer in 0..7 (a float32 score holds about 7), got {decimals!r}")
        self.inner, self.decimals, self.queries = inner, decimals, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x)
        return torch.round(p.double(), decimals=self.decimals).to(p.dtype)


class LowPrecisionOracle(Oracle):
    """Scores served in half precision (``torch.bfloat16`` or ``torch.float16``) and cast back: an
    API that computes or stores its answers in 16 bits. Not an attack of the paper; it shows why
    GradSigns' black-box extraction needs float32 answers (bf16 keeps about 3 significant digits)."""

    DTYPES = (torch.bfloat16, torch.float16)

    def __init__(self, inner: Oracle, dtype: torch.dtype = torch.bfloat16):
        if dtype not in self.DTYPES:
            raise ValueError(f"dtype must be one of: {', '.join(map(str, self.DTYPES))}, got {dtype}")
        self.inner, self.dtype, self.queries = inner, dtype, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x)
        return p.to(self.dtype).to(p.dtype)


class PerturbedOracle(Oracle):
    """GradSigns App. B, Algorithm 1 (score perturbation, Fig. 5), applied to every answer:

    1. ``P = H(X)``: the inner oracle's probabilities (line 2).
    2. ``τ_sp = min(P_top1 - P_top2 - ε, P_topM - P_top|P| - ε)`` (line 3): the most that can move
       from the top-1 label to the least likely one while the top-1 label stays on top and the
       least likely one stays below the top ``M`` (M-true label ordering). Ties leave τ_sp < 0:
       that answer is returned unchanged.
    3. ``φ ~ U(0, τ_sp]`` (line 4); the authors' code draws ``φ = τ_sp · U(low, 1)``, low = 0.001.
    4. ``P_top|P| += φ``, ``P_top1 -= φ`` (lines 5-6): two scores change, the sum stays 1.

    Every query gets its own φ (x and x + h e_c are perturbed independently). The paper's setting:
    M = 3, ε = 1e-5, extraction with h = 0.1, 50 attempts (one seed each)."""

    def __init__(self, inner: Oracle, M: int = 3, eps: float = 1e-5, low: float = 1e-3, seed: int = 0):
        if isinstance(M, bool) or not isinstance(M, int) or M < 1:
            raise ValueError(f"M (labels kept in order) must be a positive integer, got {M!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not 0.0 <= low < 1.0:
            raise ValueError(f"low must be in [0, 1), got {low}")
        self.inner, self.M, self.eps, self.low, self.queries = inner, M, eps, low, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x)
        if p.shape[1] <= self.M:
            raise ValueError(f"M must be smaller than the number of classes ({p.shape[1]}), got {self.M}")
        out = p.double()
        order = out.argsort(dim=1, descending=True, stable=True)
        top = out.gather(1, order)
        tau = (torch.minimum(top[:, 0] - top[:, 1], top[:, self.M - 1] - top[:, -1]) - self.eps).clamp(min=0)
        u = self.low + (1.0 - self.low) * torch.rand(len(p), generator=self.generator, dtype=torch.float64)
        phi = tau * u
        rows = torch.arange(len(p))
        out[rows, order[:, 0]] -= phi
        out[rows, order[:, -1]] += phi
        return out.to(p.dtype)


class FixedNoiseOracle(Oracle):
    """GradSigns §4.3.3, input noise injection (Fig. 3) as the authors' code runs it: ONE Gaussian
    pattern (``std`` on the [0, 1] scale, one image of ``shape`` C x H x W) is drawn per trial
    (``seed``) and added to every query, so x and x + h e_c carry the same noise. Compare
    :class:`NoisyOracle`, which draws fresh noise for every query. The paper superimposes the noise
    and says nothing of clipping: ``clamp`` (off by default) clips the noisy image to [0, 1]."""

    def __init__(self, inner: Oracle, std: float, shape: tuple[int, int, int], seed: int = 0, clamp: bool = False):
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        shape = tuple(shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be one image's C x H x W, got {shape}")
        self.inner, self.std, self.clamp, self.queries = inner, std, clamp, 0
        self.noise = std * torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.noise.shape):
            raise ValueError(f"queries of shape {tuple(x.shape[1:])} do not fit the noise pattern {tuple(self.noise.shape)}")
        self.queries += len(x)
        noisy = to_float(x) + self.noise
        return self.inner(noisy.clamp(0, 1) if self.clamp else noisy)


# --------------------------------------------------------------------------- the suite's query-side attacks

class InputNoise(Attack):
    name, side, about = "input-noise", "query", "Gaussian noise added to every query"
    knobs = {"input_noise_std": rules.number(0.0, rules.INF)}

    def apply(self, model, threat: Threat) -> Suspect:
        return Suspect(NoisyOracle(Oracle(model), threat.settings["input_noise_std"], threat.seed))


class Rounding(Attack):
    name, side, about, only = "rounding", "query", "scores rounded to a few decimals", "bits"
    knobs = {"round_decimals": rules.integer(0, 7)}

    def apply(self, model, threat: Threat) -> Suspect:
        return Suspect(RoundedOracle(Oracle(model), threat.settings["round_decimals"]))


class Perturbation(Attack):
    name, side, only = "perturbation", "query", "bits"
    about = "GradSigns App. B: scores perturbed, the top labels kept in order"
    knobs = {"perturb_M": rules.integer(1), "perturb_eps": rules.number(0.0, rules.INF)}

    def apply(self, model, threat: Threat) -> Suspect:
        k = threat.settings
        return Suspect(PerturbedOracle(Oracle(model), k["perturb_M"], k["perturb_eps"], seed=threat.seed))


register(InputNoise())
register(Rounding())
register(Perturbation())
