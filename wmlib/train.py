"""The one training loop, evaluation, and the train-or-load cache.

Batches are sliced from tensors already on the device (no DataLoader workers); RGB batches get a
random crop + horizontal flip on the device; on CUDA the loop uses bf16 autocast and channels_last.
Hooks cover what later chapters need: a key batch mixed into every step (``m + n``), an extra loss
term, and a weight transform registered before training.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import timing
from .data import REPO_ROOT, Split

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "step", "cosine")
OBJECTIVES = ("classify", "reconstruct")
PRECISIONS = ("fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX-512 BF16): only there does bf16
    training pay (measured: 2.2x on a ResNet-20-shaped net with AMX; 5x *slower* matmuls without)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def check_precision(precision: str) -> str | None:
    """Why ``precision`` cannot run on this machine's CPU, or None (the rule of the ``precision`` knob)."""
    if precision not in PRECISIONS:
        return f"one of: {', '.join(PRECISIONS)}"
    if precision == "bf16" and not torch.cuda.is_available() and not native_bf16():
        return ("fp32 on this machine: its CPU has no native bfloat16 matmul (neither AMX nor AVX-512 BF16), where "
                "bf16 training runs slower than fp32")
    return None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def preserved_rng():
    """Run a block without changing the Python, NumPy and torch (CPU and CUDA) random states that
    the code around it sees."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def rng_state() -> dict:
    """The Python, NumPy and torch (CPU and CUDA) random states, as tensors and plain lists (what a
    ``weights_only`` checkpoint can hold)."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(words), gauss], "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float input is taken as already scaled."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def augment_batch(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, per sample, on x's device."""
    n, _, h, w = x.shape
    dev = x.device
    xp = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    return xp[idx_n, idx_c, rows, cols]


@dataclass
class TrainConfig:
    """Everything that determines a training run (hashed by :func:`train_or_load`)."""
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = False
    keep_best: bool = False  # restore the epoch with the best validation accuracy (early stopping)
    seed: int = 0
    # CPU training arithmetic: fp32, or bf16 autocast with channels-last where the CPU has native bf16 (on CUDA the
    # loop always trains under bf16 autocast). Evaluation, and so every verification, stays in float32 on a CPU
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        self.milestones = tuple(self.milestones)

    def cache_fields(self) -> dict:
        """The fields a cache key hashes: every field, ``precision`` only where it is not fp32 (the
        keys of fp32 runs are those from before the field existed)."""
        d = asdict(self)
        if d["precision"] == "fp32":
            del d["precision"]
        return d

    @classmethod
    def from_knobs(cls, knobs: dict, **changes) -> "TrainConfig":
        """The training fields of a profile's knobs (other knobs are ignored), with ``changes``."""
        names = cls.__dataclass_fields__
        return cls(**{**{k: v for k, v in knobs.items() if k in names}, **changes})


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.epochs, 1))
    return None


_FLOAT32 = {"on": False}


@contextmanager
def float32_inference():
    """Evaluate in true float32 while the block runs: no bf16 autocast in evaluation (and so in
    every :class:`~wmlib.verify.Oracle`), TF32 off for CUDA matmuls and cuDNN convolutions. For
    verifiers that difference the returned scores (GradSigns' h = 1e-4, Eq. 5), which bf16 and TF32
    (relative errors near 1e-3) would swamp. Training is unaffected."""
    saved = (_FLOAT32["on"], torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    _FLOAT32["on"] = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        _FLOAT32["on"], torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _autocast(device: torch.device, precision: str = "fp32"):
    if device.type == "cuda" and not _FLOAT32["on"]:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and precision == "bf16" and not _FLOAT32["on"]:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def _map_batches(model: nn.Module, x: torch.Tensor, fn, device: torch.device | None, batch_size: int) -> torch.Tensor:
    """``fn(model, float batch)`` over ``x`` in eval mode, batch by batch, concatenated."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i:i + batch_size].to(device, non_blocking=True))
        with _autocast(device):
            out.append(fn(model, xb))
    model.train(was_training)
    timing.note_eval(len(x), time.perf_counter() - t0)
    return torch.cat(out) if out else torch.empty(0, device=device)


def predict_proba(model: nn.Module, x: torch.Tensor, device: torch.device | None = None,
                  batch_size: int = 1024) -> torch.Tensor:
    """Softmax outputs (float32, on ``device``) for a batch of images, in eval mode."""
    return _map_batches(model, x, lambda m, xb: torch.softmax(m(xb).float(), dim=1), device, batch_size)


def reconstruct(ae: nn.Module, x: torch.Tensor, device: torch.device | None = None,
                batch_size: int = 1024) -> torch.Tensor:
    """``AE(x)`` as float images in [0, 1], in eval mode, batch by batch."""
    return _map_batches(ae, x, lambda m, xb: m(xb).float(), device, batch_size)


def reconstruction_loss(ae: nn.Module, x: torch.Tensor, device: torch.device | None = None,
                        batch_size: int = 1024) -> torch.Tensor:
    """Per-image squared L2 reconstruction error ||x - AE(x)||^2 on the [0, 1] scale (Namba Eq. 8)."""
    return _map_batches(ae, x, lambda m, xb: (m(xb).float() - xb).pow(2).flatten(1).sum(1), device, batch_size)


def evaluate(model: nn.Module, split: Split, device: torch.device | None = None, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``split``."""
    if len(split) == 0:
        return float("nan")
    probs = predict_proba(model, split.x, device, batch_size)
    return (probs.argmax(1).cpu() == split.y.cpu()).float().mean().item()


@dataclass
class History:
    """Per-epoch record: train accuracy (on the batches seen), loss, lr, seconds, and each monitored split."""
    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    monitors: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


def fit(model: nn.Module, train: Split, cfg: TrainConfig, *, monitor: dict[str, Split] | None = None,
        val_name: str = "val", key: Split | None = None, key_per_batch: int = 0,
        extra_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        weight_transform: Callable[[nn.Module], None] | None = None, objective: str = "classify",
        batch_hook: Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        patience: int | None = None, epoch_hook: Callable[[nn.Module, int], None] | None = None,
        device: torch.device | None = None, progress: bool = True, desc: str = "train") -> History:
    """Train ``model`` in place with ``cfg``; returns its :class:`History`.

    ``monitor`` maps names to splits evaluated after every epoch (``val_name`` picks the one
    ``keep_best`` uses). ``key`` with ``key_per_batch = m`` appends ``m`` key samples to every batch
    of ``n = batch_size`` ordinary samples. ``extra_loss(model, x, y, logits)`` is added to the
    cross-entropy; ``weight_transform(model)`` runs once before the optimiser is built.
    ``batch_hook(model, x, y) -> (x, y)`` runs on every float batch before the model's step: joint
    training (Li et al.'s encoder and discriminator) takes its own optimiser steps there and returns
    the batch with the samples it made appended (detached: only the model's optimiser steps here).
    ``objective='reconstruct'`` trains an autoencoder instead (mean squared error to the input).
    Labels may be soft: a float ``y`` of class-probability rows is the cross-entropy's target as it is
    (PyTorch's probability targets; model extraction and distillation train on an API's scores).
    ``patience`` (with ``cfg.keep_best``) stops once the validation accuracy has not improved for
    that many epochs (Keras' EarlyStopping, as the GradSigns code fine-tunes). ``epoch_hook(model,
    epoch)`` runs after each epoch's steps, before the monitors (e.g. redraw random weight masks, or
    a train-time fine-tuning step on clean data).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    classify = objective == "classify"
    device = device or default_device()
    seed_everything(cfg.seed)
    if weight_transform is not None:
        weight_transform(model)
    model.to(device)
    if cfg.precision == "bf16" and device.type == "cpu" and (why := check_precision("bf16")):
        raise ValueError(f"precision must be {why}; got 'bf16'")
    channels_last = device.type == "cuda" or cfg.precision == "bf16"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train = train.to(device)
    key = key.to(device) if key is not None and key_per_batch > 0 else None
    monitor = {k: v.to(device) for k, v in (monitor or {}).items()}
    if cfg.keep_best and not classify:
        raise ValueError("keep_best picks the best validation accuracy: use it with objective='classify'")
    if cfg.keep_best and val_name not in monitor:
        raise ValueError(f"keep_best needs a monitored split named {val_name!r}")
    if patience is not None and (not cfg.keep_best or isinstance(patience, bool) or not isinstance(patience, int)
                                 or patience < 1):
        raise ValueError(f"patience must be a positive integer and needs cfg.keep_best, got {patience!r}")
    opt, hist = _optimizer(model, cfg), History(monitors={k: [] for k in monitor})
    sched = _scheduler(opt, cfg)
    loss_fn = nn.CrossEntropyLoss() if classify else nn.MSELoss()
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    rgb = train.x.shape[1] == 3
    best_acc, best_state, best_epoch = -1.0, None, 0
    n = len(train)
    evals = timing.snapshot()
    for epoch in tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, device=device, generator=g)
        correct = torch.zeros((), device=device)
        total_loss = torch.zeros((), device=device)
        seen = 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = train.x[idx], train.y[idx]
            if key is not None:
                kidx = torch.randint(0, len(key), (key_per_batch,), device=device, generator=g)
                xb, yb = torch.cat([xb, key.x[kidx]]), torch.cat([yb, key.y[kidx]])
            xb = to_float(xb)
            if cfg.augment and rgb:
                xb = augment_batch(xb, generator=g)
            if batch_hook is not None:
                xb, yb = batch_hook(model, xb, yb)
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device, cfg.precision):
                logits = model(xb)
                loss = loss_fn(logits.float(), yb if classify else xb)
                if extra_loss is not None:
                    loss = loss + extra_loss(model, xb, yb, logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if classify:  # soft targets (rows of class probabilities, e.g. a distilled teacher's) count their argmax
                correct += (logits.argmax(1) == (yb if yb.dim() == 1 else yb.argmax(1))).sum()
            total_loss += loss.detach() * len(yb)
            seen += len(yb)
        if epoch_hook is not None:
            epoch_hook(model, epoch)
        hist.epoch.append(epoch + 1)
        hist.lr.append(opt.param_groups[0]["lr"])
        if sched is not None:
            sched.step()
        hist.train_acc.append(correct.item() / max(seen, 1) if classify else float("nan"))
        hist.loss.append(total_loss.item() / max(seen, 1))
        for name, split in monitor.items():
            hist.monitors[name].append(evaluate(model, split, device) if classify else reconstruction_loss(model, split.x, device).mean().item())
        if cfg.keep_best and hist.monitors[val_name][-1] > best_acc:
            best_acc, best_state, best_epoch = hist.monitors[val_name][-1], copy.deepcopy(model.state_dict()), epoch
        hist.seconds.append(time.perf_counter() - t0)
        if patience is not None and epoch - best_epoch >= patience:
            break
    if cfg.keep_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    # the monitors' evaluations are in the ledger's evaluation seconds already
    timing.note_fit(len(hist.epoch), n * len(hist.epoch), sum(hist.seconds) - timing.since(evals)["eval_seconds"])
    return hist


def step_seconds(model: nn.Module, data: Split, cfg: TrainConfig, steps: int = 40, warmup: int = 5,
                 **fit_kw) -> float:
    """Seconds per training step of :func:`fit` (after ``warmup`` steps), e.g. to price a weight
    transform: pass the same ``weight_transform`` that embedding uses."""
    from dataclasses import replace
    bs = cfg.batch_size
    transform = fit_kw.pop("weight_transform", None)
    if transform is not None:
        transform(model)
    cfg = replace(cfg, epochs=1)
    fit(model, data.subset(slice(0, warmup * bs)), cfg, progress=False, **fit_kw)
    hist = fit(model, data.subset(slice(0, steps * bs)), cfg, progress=False, **fit_kw)
    return hist.seconds[0] / steps


# --------------------------------------------------------------------------- train-or-load cache

def cache_dir() -> Path:
    """Where trained models are cached: ``$WMLIB_CACHE`` or ``data/cache``."""
    return Path(os.environ.get("WMLIB_CACHE", REPO_ROOT / "data" / "cache"))


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 over the bytes of tensors (shape and dtype included): identifies keys and weights."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d BN counters
    return h.hexdigest()


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _state_digest(state: dict) -> str:
    return tensor_digest(*[state[k] for k in sorted(state)])


def model_digest(model: nn.Module) -> str:
    """SHA-256 over a model's state (weights, buffers): identifies one trained model."""
    return _state_digest(model.state_dict())


def train_or_load(tag: str, config: dict, build: Callable[[], nn.Module],
                  train: Callable[[nn.Module], History], device: torch.device | None = None,
                  any_tag: bool = True, replay_rng: bool = False) -> tuple[nn.Module, History, bool]:
    """Load the model trained with exactly ``config`` from the cache, or train and cache it.

    Returns ``(model, history, loaded)``. The file name carries a hash of the whole config; with
    ``any_tag``, a model trained with the same config under another ``tag`` is the same model and is
    loaded (pass False when ``config`` does not describe everything ``train`` does); the payload carries a digest of the weights, so a truncated or altered file is detected, moved
    aside (never silently overwritten) and the model retrained. By default the caller's random
    state is left as it was, so what runs next does not depend on whether the cache was warm.
    ``replay_rng``: instead, the random state is left as ``train`` leaves it, trained or loaded (the
    payload keeps it), so that a cached step stands in for an uncached one exactly.
    """
    with preserved_rng():
        model, hist, loaded, rng = _train_or_load(tag, config, build, train, device, any_tag, replay_rng)
    if replay_rng:
        set_rng_state(rng)
    return model, hist, loaded


@contextmanager
def _exclusive(digest: str):
    """Hold the lock of one config: parallel workers (the comparison's Ray tasks) that need the same
    model wait for the first to train it, then load it, instead of training it twice."""
    import fcntl

    lock = cache_dir() / "locks" / f"{digest}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_or_load(tag: str, config: dict, build: Callable[[], nn.Module], train: Callable[[nn.Module], History],
                   device: torch.device | None, any_tag: bool, replay_rng: bool = False):
    digest = config_hash(config)
    with _exclusive(digest):
        path = cache_dir() / f"{tag}-{digest}.pt"
        if any_tag and not path.exists():  # the same config trained under another name (e.g. by a chapter)
            path = next(iter(sorted(cache_dir().glob(f"*-{digest}.pt"))), path)
        return _load_or_train(path, config, build, train, device or default_device(), replay_rng)


def _load_or_train(path: Path, config: dict, build: Callable[[], nn.Module], train: Callable[[nn.Module], History],
                   device: torch.device, replay_rng: bool = False):
    model = build()
    if path.exists():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload["config"] != json.loads(json.dumps(config, default=str)) or \
                    _state_digest(payload["state_dict"]) != payload["digest"]:
                raise ValueError("config or weight digest mismatch")
            if replay_rng and "rng" not in payload:
                raise ValueError("no random state to replay")
            model.load_state_dict(payload["state_dict"])
            return model.to(device).eval(), History.from_dict(payload["history"]), True, payload.get("rng")
        except Exception as err:  # corrupted / truncated / foreign file
            bad = path.with_suffix(f".corrupt-{int(time.time())}")
            os.replace(path, bad)
            warnings.warn(f"cached model {path.name} is unreadable ({err}); moved to {bad.name}, retraining")
    hist = train(model)
    rng = rng_state() if replay_rng else None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"config": json.loads(json.dumps(config, default=str)), "state_dict": state,
               "digest": _state_digest(state), "history": hist.as_dict(), **({"rng": rng} if replay_rng else {})}
    save_atomic(payload, path)
    return model.to(device).eval(), hist, False, rng


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


_HOOKS = ("extra_loss", "weight_transform", "batch_hook", "epoch_hook")


def fit_cached(model: nn.Module, data: Split, cfg: TrainConfig, *, tag: str = "fit", describe: dict | None = None,
               monitor: dict[str, Split] | None = None, device: torch.device | None = None, **fit_kw) -> History:
    """:func:`fit` through the model cache: ``model`` (already trained, e.g. a stolen one) ends in
    place with the weights ``fit`` gives it, trained now or loaded, and the random state as ``fit``
    leaves it (replayed from the cache), so a cached call stands in for an uncached one exactly.
    The key covers the starting weights (and pruning masks), the data, ``cfg``, the monitored splits
    and the options; a hook (``extra_loss``, ``batch_hook``, ...) must be described by the caller
    in ``describe`` (what it does and its settings), since a function cannot be hashed. The
    thieves' fine-tunings go through here, so a warm rebuild of the book retrains nothing."""
    if fit_kw.get("weight_transform") is not None:
        raise ValueError("a weight transform changes the model's structure: cache the model with train_or_load instead")
    hooks = sorted(k for k in _HOOKS if fit_kw.get(k) is not None)
    if hooks and not describe:
        raise ValueError(f"describe the hook(s) {', '.join(hooks)} (what they do, their settings): they decide the "
                         "result, and a function cannot be hashed into the cache key")
    device = device or default_device()
    monitor = monitor or {}
    key = fit_kw.get("key")
    config = {"fit": describe or {}, "hooks": hooks, "init": model_digest(model), "data": tensor_digest(data.x, data.y),
              "train": cfg.cache_fields(), "monitor": {k: tensor_digest(v.x, v.y) for k, v in sorted(monitor.items())},
              "key": tensor_digest(key.x, key.y) if key is not None else None,
              "options": {k: fit_kw[k] for k in ("val_name", "key_per_batch", "objective", "patience") if k in fit_kw}}
    _, hist, _ = train_or_load(tag, config, lambda: model,  # trained in place, or the cached weights loaded into it
                               lambda m: fit(m, data, cfg, monitor=monitor, device=device, progress=False, **fit_kw),
                               device, replay_rng=True)
    return hist


def train_classifier(tag: str, model_name: str, splits, cfg: TrainConfig, *, key=None, scheme=None,
                     init: nn.Module | None = None, monitor: dict[str, Split] | None = None,
                     device: torch.device | None = None, progress: bool = True) -> tuple[nn.Module, History, bool]:
    """Train-or-load a ``model_name`` classifier on the owner's data (``scheme`` given: with ``key``
    embedded by ``scheme.train``; ``init`` given: starting from a copy of that trained model).
    The cache key covers the model, the owner's data, the key, the scheme's ``config()``, the
    starting weights, the training config and the monitored splits: it describes the whole run, so
    a model trained with the same config under another ``tag`` (a chapter's) is the same model."""
    from . import models

    s = splits.spec
    monitor = monitor or {}
    if (key is None) != (scheme is None):
        raise ValueError("give a key and the scheme that embeds it, or neither")
    config = {"model": model_name, "dataset": s.name, "owner": tensor_digest(splits.owner.x, splits.owner.y),
              "train": cfg.cache_fields(), "key": key.digest() if key is not None else None,
              "key_meta": key.meta if key is not None else None, "monitor": sorted(monitor),
              "init": _state_digest(init.state_dict()) if init is not None else None,
              **({"scheme": scheme.config()} if scheme is not None else {})}

    def build() -> nn.Module:
        if init is not None:
            return copy.deepcopy(init)
        seed_everything(cfg.seed)  # the initial weights depend on the seed only
        return models.build(model_name, s.channels, s.num_classes)

    def run(model: nn.Module) -> History:
        kw = dict(monitor=monitor, device=device, progress=progress, desc=tag)
        return scheme.train(model, splits, key, cfg, **kw) if scheme is not None else fit(model, splits.owner, cfg, **kw)

    return train_or_load(tag, config, build, run, device)
