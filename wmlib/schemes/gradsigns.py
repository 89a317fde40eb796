"""Aramoon, Chen & Qu, "Don't Forget to Sign the Gradients!", MLSys 2021 (GradSigns).

The owner's secret (§3.1, Steps 1-4) is a signature ``b`` ∈ {0, 1}^N, a carrier set ``C`` of input
positions, an embedding matrix ``K`` ∈ U(-1, 1)^{N×|C|} and a target class ``T``. The watermark
lives in ``G``, the expected gradient of the cross-entropy with respect to the input at the
carriers, over images of class T: bit j is ``K_j · G > 0`` (Eq. 2). Embedding adds
``λ · BCE(σ(K G), b)`` to the training loss (Eq. 1, 4), with ``G`` differentiated twice through the
one training loop's ``extra_loss`` hook. Extraction computes ``G`` by backpropagation (white-box) or
estimates it from the returned probabilities with forward differences (black-box, Eq. 5,
``s · (|C| + 1)`` queries). Ownership: at most η bit errors, with P(≤ η errors | p = ½) < τ = 3e-3
(§4.2: 14/16, 25/32, 44/64 matching bits).

A :class:`~wmlib.keys.Key` carries the secret: ``x`` the ``s`` class-T images the owner queries,
``y`` = T, and ``extras`` = {"bits", "carriers", "matrix"}; ``meta`` records the scheme's config.

Facts from the authors' code, not stated in the paper, are marked [code] below.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import rules
from .. import train as _train
from ..data import Split, Splits
from ..keys import Key
from ..train import History, TrainConfig, fit, to_float
from ..verify import Null, Oracle, Verdict
from .base import Generation, Scheme, require_positive_integers
from .catalogue import register, register_knobs
from .zhang2018 import Zhang2018

REDUCTIONS = ("mean", "sum")
SECRET = ("bits", "carriers", "matrix")

# Table 6: carrier set size |C| for each signature length N, and the extraction sample size s
TABLE6 = {"cifar10": {"carriers": {16: 128, 32: 256, 64: 384}, "samples": 50},
          "svhn": {"carriers": {16: 256, 32: 256, 64: 512}, "samples": 50},
          "ytf": {"carriers": {16: 64, 32: 128, 64: 128}, "samples": 20}}


# |C| for tasks Table 6 does not cover (e.g. 28 x 28 grey): its CIFAR-10 row, our choice
DEFAULT_CARRIERS = TABLE6["cifar10"]["carriers"]


def default_carriers(bits: int) -> int | None:
    """|C| when a profile leaves ``carriers`` at None: Table 6's CIFAR-10 value for N = ``bits``,
    or None where Table 6 has no such N."""
    return DEFAULT_CARRIERS.get(bits)


def check_knobs(knobs: dict, spec, own: bool = True) -> None:
    """A chapter's GradSigns knobs that must agree with each other and with the task (``spec``):
    every signature length of ``bits`` and ``bits_list`` has a carrier count that fits the image."""
    if "bits_list" not in knobs:
        return
    positions = spec.channels * spec.image_size ** 2
    for n in sorted({knobs["bits"], *knobs["bits_list"]}):
        c = knobs["carriers"] if knobs["carriers"] is not None else default_carriers(n)
        if c is None:
            raise ValueError(f"knob 'carriers' is None, so |C| comes from Table 6 (N in 16, 32, 64); N = {n} needs "
                             f"-p carriers ...")
        if not n <= c <= positions:
            raise ValueError(f"N = {n} bits need |C| in [{n}, {positions}] (the input positions of {knobs['dataset']}); "
                             f"got |C| = {c}")


def float32_queries():
    """Answer queries in true float32 while the block runs (:func:`wmlib.train.float32_inference`).

    Why: Eq. 5 divides a loss difference by h = 1e-4; TF32 and bf16 carry relative errors near 1e-3
    and swamp it. The book's Oracle stands for a suspect served in float32 (as the authors' Keras
    models were); its bf16 on CUDA is only our speed-up for label queries.
    """
    return _train.float32_inference()


def secret(key: Key) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(bits b, carriers C, matrix K, target T)`` of a GradSigns key."""
    missing = [k for k in SECRET if k not in key.extras]
    if missing:
        raise ValueError(f"not a GradSigns key: its extras lack {', '.join(missing)}")
    if len(key) == 0 or not (key.y == key.y[0]).all():
        raise ValueError("a GradSigns key holds at least one image, all of one target class")
    return key.extras["bits"], key.extras["carriers"], key.extras["matrix"], int(key.y[0])


def carrier_image(key: Key) -> torch.Tensor:
    """The carrier set C drawn as a uint8 image (1 x C x H x W): 255 at the carriers, 0 elsewhere."""
    _, carriers, _, _ = secret(key)
    img = torch.zeros(key.x[0].numel(), dtype=torch.uint8)
    img[carriers] = 255
    return img.view(1, *key.x.shape[1:])


def input_gradient(model: nn.Module, x: torch.Tensor, target: int, create_graph: bool = False) -> torch.Tensor:
    """Per image, ∇ₓ CE(f(x), T), flattened (images x C·H·W); ``x`` is a float batch on the model's
    device. ``create_graph`` keeps the graph for a second backward (embedding)."""
    x = x.detach().requires_grad_(True)
    y = torch.full((len(x),), target, dtype=torch.int64, device=x.device)
    ce = F.cross_entropy(model(x).float(), y, reduction="sum")  # the sum: each row is its own image's gradient
    (g,) = torch.autograd.grad(ce, x, create_graph=create_graph)
    return g.flatten(1)


@dataclass
class GradSigns(Scheme):
    bits: int = 32             # N (§4: 16, 32 or 64)
    carriers: int = 256        # |C| (Table 6: 256 for CIFAR-10 at N = 32)
    target: int = 0            # T (§4: CIFAR-10 "airplane")
    samples: int = 50          # s, class-T images queried for extraction (Table 6)
    lam: float = 0.3           # λ (Eq. 1); [code] CLI default 0.3, the paper gives no value
    reduction: str = "mean"    # BCE over bits: "mean" as [code] (Keras), or "sum" as Eq. 4
    key_per_batch: int = 10    # class-T images mixed into every batch ([code]: 10 of every 100)
    h: float = 1e-4            # Eq. 5 step length (§3.2)
    clip: float = 1e-7         # probabilities clipped to [clip, 1 - clip] before the log ([code], Keras)
    query_batch: int = 4096    # black-box queries sent per oracle call

    name = "gradsigns"
    paper_rule = "§4.2: P[Binom(N, ½) >= matched bits] < τ = 3e-3"
    trials = "bits"  # one verification trial is one signature bit, read from the scores

    def __post_init__(self):
        require_positive_integers(self, "bits", "carriers", "samples")
        if self.bits > self.carriers:
            raise ValueError(f"bits must be in 1..carriers ({self.carriers}): K maps |C| gradients to N bits, "
                             f"got {self.bits}")
        if self.target < 0:
            raise ValueError(f"target must be a class index in [0, classes), got {self.target}")
        if self.lam < 0:
            raise ValueError(f"lam (λ) must be >= 0 (0: no regulariser), got {self.lam}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduction!r}; choose one of: {', '.join(REDUCTIONS)}")
        if self.key_per_batch < 0:
            raise ValueError(f"key_per_batch must be >= 0, got {self.key_per_batch}")
        if not self.h > 0:
            raise ValueError(f"h must be > 0, got {self.h}")
        if not 0 < self.clip < 0.5:
            raise ValueError(f"clip must be in (0, 0.5), got {self.clip}")
        if self.query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {self.query_batch}")

    @classmethod
    def from_knobs(cls, knobs: dict, **changes) -> "GradSigns":
        """The scheme with the fields a profile's knobs set, then ``changes`` (other knobs are
        ignored; None keeps the field's default). ``carriers=None`` takes Table 6's CIFAR-10 |C|
        for the signature length (our choice for tasks Table 6 does not cover)."""
        kw = {k: v for k, v in {**knobs, **changes}.items() if k in cls.__dataclass_fields__ and v is not None}
        if "carriers" not in kw:
            bits = kw.get("bits", cls.bits)
            kw["carriers"] = default_carriers(bits)
            if kw["carriers"] is None:
                raise ValueError(f"carriers is None, so |C| comes from Table 6 (N in {', '.join(map(str, DEFAULT_CARRIERS))}); "
                                 f"N = {bits} needs an explicit carriers")
        return cls(**kw)

    @classmethod
    def table6(cls, dataset: str, bits: int, **kw) -> "GradSigns":
        """The paper's |C| and s for ``dataset`` at N = ``bits`` (Table 6)."""
        if dataset not in TABLE6:
            raise ValueError(f"Table 6 has no {dataset!r}; choose one of: {', '.join(TABLE6)}")
        row = TABLE6[dataset]
        if bits not in row["carriers"]:
            raise ValueError(f"Table 6 has N in {', '.join(map(str, row['carriers']))}, got {bits}")
        return cls(bits=bits, carriers=row["carriers"][bits], samples=row["samples"], **kw)

    def check(self, spec) -> None:
        if not self.target < spec.num_classes:
            raise ValueError(f"target must be in [0, {spec.num_classes}) for {spec.name}, got {self.target}")
        positions = spec.channels * spec.image_size ** 2
        if self.carriers > positions:
            raise ValueError(f"carriers must be in 1..{positions} (the input positions of {spec.name}), got {self.carriers}")

    # ------------------------------------------------------------------ key and embedding

    def key_generation(self) -> Generation:
        return Generation("the owner's class-T images (held-out: the test set's)", True,
                          "signature bits, carrier set and embedding matrix come from one seeded generator, the queried "
                          "images are a seeded choice of class-T owner images: a function of seed, config and data (its "
                          "trials are bits read from gradients, not labels)")

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """§3.1 Steps 1-4: b ~ Bernoulli(½)^N, C uniform without replacement over the flattened
        pixel × channel positions, K ~ U(-1, 1) ([code] for all three draws), T given. The key's
        images are ``samples`` class-T owner images; ``new`` holds the same secret with class-T
        test images (extraction should not depend on which class-T images are asked)."""
        s = splits.spec
        self.check(s)
        shape = tuple(splits.owner.x.shape[1:])
        positions = shape[0] * shape[1] * shape[2]
        g = torch.Generator().manual_seed(seed)
        extras = {"bits": torch.randint(0, 2, (self.bits,), generator=g).bool(),
                  "carriers": torch.randperm(positions, generator=g)[:self.carriers],
                  "matrix": torch.rand(self.bits, self.carriers, generator=g) * 2 - 1}
        meta = {**self.config(), "task": s.name, "seed": seed, "shape": list(shape)}
        keys = []
        for part, split in (("trained", splits.owner), ("new", splits.test)):
            pool = split.where(self.target)
            if len(pool) < self.samples:
                raise ValueError(f"samples must be in 1..{len(pool)}: the {part} key draws them from the "
                                 f"{len(pool)} class-{self.target} images of its split, got {self.samples}")
            idx = torch.randperm(len(pool), generator=g)[:self.samples]
            keys.append(Key(pool.x[idx].contiguous(), torch.full((self.samples,), self.target, dtype=torch.int64),
                            {**meta, "part": part}, dict(extras)))
        return keys[0], keys[1]

    def regularizer(self, key: Key) -> Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The ``extra_loss(model, x, y, logits)`` of :func:`wmlib.train.fit`: λ · BCE(σ(K G), b)
        (Eq. 1, 4) with G the mean input gradient over the batch's class-T images at the carriers.

        Differences from [code], each a choice: G averages over every class-T image of the batch
        (the 10 mixed in and those the ordinary batch holds) where [code] uses only the 10; and the
        class-T images are passed through the model in eval mode, i.e. G is the gradient of the
        function extraction queries (a train-mode pass of a class-T-only batch would measure
        class-T batch statistics instead, and would drag BatchNorm's running statistics with it).
        The BCE is the mean over bits as [code] unless ``reduction='sum'`` (Eq. 4); G is the mean
        over images, as [code]. Only the class-T images are differentiated twice (cheap)."""
        bits, carriers, matrix, target = secret(key)
        cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

        def extra_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            mine = y == target
            if self.lam == 0 or not mine.any():
                return logits.new_zeros((), dtype=torch.float32)
            if x.device not in cache:
                cache[x.device] = (bits.float().to(x.device), carriers.to(x.device), matrix.to(x.device))
            b, c, k = cache[x.device]
            was_training = model.training
            model.eval()
            try:
                grad = input_gradient(model, x[mine], target, create_graph=True)
            finally:
                model.train(was_training)
            with torch.autocast(x.device.type, enabled=False):  # N x |C| products in float32, even under bf16
                z = k @ grad[:, c].float().mean(0)
            return self.lam * F.binary_cross_entropy_with_logits(z, b, reduction=self.reduction)

        return extra_loss

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """§3.1: train from scratch on the owner's data with Eq. 1's loss; ``key_per_batch`` class-T
        owner images are appended to every batch of ``cfg.batch_size`` ([code]: 90 + 10 = 100)."""
        _, _, _, target = secret(key)
        stream = splits.owner.where(target)
        if len(stream) == 0:
            raise ValueError(f"the owner's data has no class-{target} images to embed with")
        return fit(model, splits.owner, cfg, key=stream, key_per_batch=self.key_per_batch,
                   extra_loss=self.regularizer(key), **fit_kw)

    # ------------------------------------------------------------------ extraction

    def gradient_whitebox(self, model: nn.Module, key: Key, batch_size: int = 256) -> torch.Tensor:
        """§3.2, white-box: G at the carriers by backpropagation, averaged over the key's images
        (float64, on the CPU; the model in eval mode, float32 without TF32)."""
        _, carriers, _, target = secret(key)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        total = torch.zeros(len(carriers), dtype=torch.float64)
        try:
            with float32_queries():
                for i in range(0, len(key), batch_size):
                    xb = to_float(key.x[i:i + batch_size].to(device))
                    total += input_gradient(model, xb, target)[:, carriers.to(device)].double().sum(0).cpu()
        finally:
            model.train(was_training)
        return total / len(key)

    def gradient(self, oracle: Oracle, key: Key, h: float | None = None, exact: bool = True) -> torch.Tensor:
        """§3.2, black-box (Eq. 5): Ĝ_c = [J(x + h e_c) - J(x)] / h averaged over the key's images,
        J = -log p_T from the oracle's probabilities, clipped to [clip, 1 - clip] ([code]) and taken
        in float64. Sends ``s · (|C| + 1)`` float queries in [0, 1] (plus h), counted by the oracle.
        ``exact`` (default) runs the queries inside :func:`float32_queries`; ``exact=False`` leaves
        the oracle's arithmetic alone (on CUDA: bf16, which breaks h = 1e-4)."""
        h = self.h if h is None else h
        if not h > 0:
            raise ValueError(f"h must be > 0, got {h}")
        _, carriers, _, target = secret(key)
        n_c = len(carriers)
        x = to_float(key.x).flatten(1)
        step = torch.arange(1, n_c + 1)
        per_call = max(1, self.query_batch // (n_c + 1))
        total = torch.zeros(n_c, dtype=torch.float64)
        with float32_queries() if exact else nullcontext():
            for i in range(0, len(x), per_call):
                q = x[i:i + per_call].unsqueeze(1).repeat(1, n_c + 1, 1)  # row 0: x; row 1 + k: x + h e_{c_k}
                q[:, step, carriers] += h
                p = oracle(q.view(-1, *key.x.shape[1:]))[:, target].double()
                j = -p.clamp(self.clip, 1 - self.clip).log().reshape(len(q), n_c + 1)
                total += ((j[:, 1:] - j[:, :1]) / h).sum(0)
        return total / len(x)

    @staticmethod
    def project(key: Key, g: torch.Tensor) -> torch.Tensor:
        """K · G (float64): the N values whose signs carry the signature."""
        _, _, matrix, _ = secret(key)
        return matrix.double() @ g.double()

    @classmethod
    def decode(cls, key: Key, g: torch.Tensor) -> torch.Tensor:
        """Eq. 2: bit j = [K_j · G > 0], i.e. σ(K_j · G) > ½."""
        return cls.project(key, g) > 0

    @classmethod
    def matches(cls, key: Key, g: torch.Tensor) -> torch.Tensor:
        """Per bit: does the bit decoded from ``g`` equal b_j? A bit with K_j · G exactly 0 carries no
        signal (e.g. every loss difference rounded away, or saturated outputs) and is counted as a
        mismatch, so that an API that hides all gradients matches no bits, not the zeros of b."""
        bits = secret(key)[0]
        z = cls.project(key, g)
        return (z != 0) & ((z > 0) == bits)

    def extract_whitebox(self, model: nn.Module, key: Key) -> torch.Tensor:
        """The N signature bits read from ``model``'s gradients (white-box access)."""
        return self.decode(key, self.gradient_whitebox(model, key))

    def extract(self, oracle: Oracle, key: Key, h: float | None = None, exact: bool = True) -> torch.Tensor:
        """The N signature bits read through the suspect's API (black-box, Eq. 5)."""
        return self.decode(key, self.gradient(oracle, key, h, exact))

    def hits_whitebox(self, model: nn.Module, key: Key) -> torch.Tensor:
        """Per signature bit: does the white-box extracted bit match ``b``? (see :meth:`matches`)"""
        return self.matches(key, self.gradient_whitebox(model, key))

    def confidence_gap(self, oracle: Oracle, key: Key) -> torch.Tensor:
        """1 - p_T for each of the key's images, as the API returns it (float32 queries, float64
        here; sends s queries). Where it nears float32's resolution (about 6e-8 next to 1) or the
        ``clip``, the loss differences of Eq. 5 at h = 1e-4 drown in rounding."""
        _, _, _, target = secret(key)
        with float32_queries():
            return 1.0 - oracle(key.x)[:, target].double()

    def bit_accuracy(self, model: nn.Module, key: Key) -> float:
        """1 - BER read white-box: the watermark accuracy the authors' code reports under pruning and
        fine-tuning (a ``model -> score`` measure for :func:`wmlib.attacks.prune_finetune_sweep`)."""
        return float(self.hits_whitebox(model, key).double().mean())

    # ------------------------------------------------------------------ the trial: one signature bit

    def hits(self, oracle: Oracle, key: Key, h: float | None = None, exact: bool = True) -> torch.Tensor:
        """Per signature bit: does the black-box extracted bit match ``b``? (see :meth:`matches`) The
        trial the zoo null counts (``Zoo.null(key, scheme)``)."""
        return self.matches(key, self.gradient(oracle, key, h, exact))

    def chance(self, num_classes: int) -> float:
        """A random bit matches with probability ½, whatever the task."""
        return 0.5

    def queries(self, key: Key, n_queries: int | None, seed: int = 0) -> Key:
        """Extraction needs every one of the key's ``s`` images (Eq. 5): ``n_queries`` does not apply."""
        return key

    def trial_count(self, key: Key, n_queries: int) -> int:
        return self.bits

    def hits_id(self) -> str:
        """The fields extraction reads with (its h, clip and batch decide the bits read); λ, the
        reduction and key_per_batch only shape embedding, so a zoo reads each key once for every λ."""
        return repr(replace(self, lam=0.0, reduction="mean", key_per_batch=0))

    def paper_null(self, key: Key) -> Null:
        """§4.2: every bit a fair coin, Null.binomial(0.5) (with τ = alpha = 3e-3 the paper's rule)."""
        return Null.binomial(0.5)

    def verify(self, oracle: Oracle, key: Key, null: Null | None = None, alpha: float = 3e-3,
               n_queries: int | None = None, seed: int = 0) -> Verdict:
        """§4.2: the one verifier with the paper's τ = 3e-3 as the default level."""
        return super().verify(oracle, key, null, alpha, n_queries, seed)

    def forge(self, model: nn.Module, data: Split, spec, cfg: TrainConfig, seed: int) -> tuple[nn.Module, Key, History]:
        """§4.4 (Table 5), the forging attack: a thief who knows the method draws its own secret
        (this scheme's N, |C|, s, λ and target; key seed ``seed``) and re-trains a copy of the
        stolen ``model`` on its own ``data`` with Eq. 1's loss. Returns the forged model, the
        forger's key (class-T images from ``data``; at most ``samples``, fewer if the thief holds
        fewer) and the training history."""
        splits = Splits(data, data.subset(slice(0, 0)), data, spec)  # the thief has only its own data
        own = int((data.y == self.target).sum())
        key, _ = (self if own >= self.samples else replace(self, samples=max(own, 1))).make_key(splits, seed)
        forged = copy.deepcopy(model)
        hist = self.train(forged, splits, key, cfg, progress=False, device=next(model.parameters()).device)
        return forged, key, hist


# --------------------------------------------------------------------------- the catalogue's entry

register("gradsigns", GradSigns.from_knobs)


RIVALS = ("zhang-content", "zhang-unrelated", "zhang-noise", "namba-afs", "namba-ds")  # the chapter's rivals (its Fig. 2)


def rival_settings(knobs: dict) -> dict[str, dict]:
    """The settings of the chapter's rivals (knob ``compare``, catalogue names), as its Fig. 2 sets them up:
    Zhang et al.'s keys with this chapter's knobs of theirs (the target class, the unrelated images), Namba &
    Sakuma's AFS and DS keys (``n_keys``, ``afs_eps``) retrained ``retrain_epochs`` at ``retrain_lr``, 4 keys a batch."""
    zhang = Zhang2018.knob_settings(knobs)
    namba = dict(n_keys=knobs["n_keys"], eps=knobs["afs_eps"], key_per_batch=4, retrain_epochs=knobs["retrain_epochs"],
                 retrain_lr=knobs["retrain_lr"])
    return {name: dict(zhang if name.startswith("zhang-") else namba) for name in knobs["compare"]}


_POS, _POS_INT = rules.number(0.0, rules.INF, lo_open=True), rules.integer(1)
_SHARE = rules.number(0.0, 1.0, lo_open=True)
register_knobs("gradsigns", {
    "compare": rules.list_of(rules.choice(RIVALS), nonempty=False),
    "bits": _POS_INT, "bits_list": rules.list_of(_POS_INT), "carriers": rules.integer(1, none=True), "samples": _POS_INT,
    "lam": rules.number(0.0, rules.INF, lo_open=True, none=True), "lam_sweep": rules.list_of(_POS), "reduction": rules.choice(REDUCTIONS),
    "h": _POS, "thief_per_class": rules.list_of(_POS_INT), "fgsm_eps": _SHARE, "fgsm_mix": _SHARE, "fgsm_epochs": _POS_INT,
    "fgsm_ablation": rules.list_of(_SHARE, nonempty=False), "sweep_test": rules.integer(10, none=True), "wm_samples": _POS_INT,
    "noise_stds": rules.list_of(rules.number(0.0, rules.INF)), "noise_trials": _POS_INT, "decimals": rules.list_of(rules.integer(0, 7)),
    "h_sweep": rules.list_of(_POS), "perturb_attempts": _POS_INT, "perturb_h": _POS, "forge_per_class": rules.list_of(_POS_INT),
    "forge_lam_factors": rules.list_of(_POS), "forge_epochs": rules.integer(1, none=True), "forge_target": rules.integer(0),
    "benchmark_steps": _POS_INT}, check_knobs)
