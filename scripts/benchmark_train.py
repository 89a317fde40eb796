"""Throughput of wmlib's training loop against a plain hand-written PyTorch loop, of N models
trained at once, and the share of this machine's measured matmul peak each reaches.

Every path trains the same model on the same data held on the device, with the same optimiser
(SGD, momentum 0.9) and batch size:

- ``plain``: a minimal loop over pre-converted float tensors: forward, loss, backward, step (on
  CUDA with the same bf16 autocast and channels_last);
- ``wmlib``: :func:`wmlib.train.fit`, one model after another (target: >= 0.8x plain);
- ``stacked``: N models of the same shape at once, each on its own shuffle of the data, with
  ``torch.func`` (``stack_module_state`` + ``vmap`` of ``grad`` over ``functional_call``), the
  same SGD update applied to the stacked weights.

The FLOPs of one training step are counted with ``torch.utils.flop_counter`` (forward and
backward of the convolutions and matmuls), and the peak is the best float32 (and bfloat16) matmul
rate measured here with every thread, so "share of peak" says how much of what this machine can
compute a loop uses. On a CPU with native bfloat16 (AMX or AVX-512 BF16), both loops also run with
bf16 autocast and channels_last (the ``precision`` knob's bf16), and ``bf16_vs_fp32`` gives the
speed-up. Prints one JSON object.

    python scripts/benchmark_train.py                    # LeNet-5 on Fashion-MNIST (CPU or GPU)
    python scripts/benchmark_train.py --stack 8          # and 8 LeNet-5s at once
    python scripts/benchmark_train.py --model resnet20 --synthetic-cifar --epochs 2
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn

from wmlib import data, models, train


def plain_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
               device: torch.device, bf16: bool = False) -> float:
    """The reference: a minimal loop over pre-converted float tensors (``bf16`` on a CPU: bf16 autocast
    and channels_last, as on CUDA). Returns seconds."""
    xf = x.float().div(255.0)
    bf16 = bf16 or device.type == "cuda"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        xf = xf.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y), device=device)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(xf[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - t0


def wmlib_loop(model: nn.Module, split: data.Split, epochs: int, batch_size: int, lr: float,
               device: torch.device, precision: str = "fp32") -> float:
    cfg = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, precision=precision)
    _sync(device)
    t0 = time.perf_counter()
    train.fit(model, split, cfg, device=device, progress=False)
    _sync(device)
    return time.perf_counter() - t0


def stacked_loop(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
                 device: torch.device) -> float:
    """N same-shaped models trained at once with torch.func, each on its own permutation of the
    data, with SGD + momentum 0.9 on the stacked weights. Returns seconds."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    xf = x.float().div(255.0)

    def loss_fn(p, b, xb, yb):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    step = vmap(grad(loss_fn))
    mom = {k: torch.zeros_like(v) for k, v in params.items()}
    n, k = len(y), len(nets)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perms = torch.stack([torch.randperm(n, device=device) for _ in range(k)])
        for i in range(0, n, batch_size):
            idx = perms[:, i:i + batch_size]
            grads = step(params, buffers, xf[idx], y[idx])
            with torch.no_grad():
                for name, g in grads.items():
                    mom[name].mul_(0.9).add_(g)
                    params[name].sub_(lr * mom[name])
    _sync(device)
    return time.perf_counter() - t0


def step_flops(model: nn.Module, shape: tuple, classes: int, batch_size: int, device: torch.device) -> float:
    """FLOPs of one training step's forward and backward per image (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch_size, *shape, device=device)
    y = torch.randint(0, classes, (batch_size,), device=device)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch_size


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """The best GFLOP/s of square matmuls (1024 to 4096) on this device with every thread."""
    best = 0.0
    for size in (1024, 2048, 4096):
        a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
        a @ b
        _sync(device)
        reps = 3
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * size ** 3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--synthetic-cifar", action="store_true", help="random 3x32x32 data (50k) instead of a dataset")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--stack", type=int, default=8, help="N models at once for the stacked path (0: skip it)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    device = train.default_device()
    if args.synthetic_cifar:
        x = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8)
        y = torch.randint(0, 10, (50000,))
        channels, classes, name = 3, 10, "synthetic CIFAR-shaped"
    else:
        x, y = data.load(args.dataset, train=True)
        s = data.spec(args.dataset)
        channels, classes, name = s.channels, s.num_classes, args.dataset
    split = data.Split(x, y).to(device)
    # on a CPU with native bf16, both loops again with the precision knob's bf16 (autocast + channels_last)
    bf16_paths = ("plain-bf16", "wmlib-bf16") if device.type == "cpu" and train.native_bf16() else ()
    paths = ("plain", "wmlib") + bf16_paths + (("stacked",) if args.stack > 1 else ())
    results: dict[str, list[float]] = {k: [] for k in paths}
    for r in range(args.repeats + 1):  # the first round warms up kernels and allocators
        for which in paths:
            torch.manual_seed(r)
            if which == "stacked":
                nets = [models.build(args.model, channels, classes).to(device) for _ in range(args.stack)]
                secs = stacked_loop(nets, split.x, split.y, args.epochs, args.batch_size, 0.01, device)
                images = len(y) * args.epochs * args.stack
            else:
                m = models.build(args.model, channels, classes).to(device)
                bf16 = which.endswith("-bf16")
                secs = plain_loop(m, split.x, split.y, args.epochs, args.batch_size, 0.01, device, bf16) \
                    if which.startswith("plain") else \
                    wmlib_loop(m, split, args.epochs, args.batch_size, 0.01, device, "bf16" if bf16 else "fp32")
                images = len(y) * args.epochs
            if r > 0:
                results[which].append(images / secs)
    best = {k: max(v) for k, v in results.items()}
    flops = step_flops(models.build(args.model, channels, classes).to(device), tuple(split.x.shape[1:]), classes,
                       args.batch_size, device)
    # the bf16 peak only where bf16 is native (or on CUDA): a CPU without it emulates bf16 matmuls at a few GFLOP/s,
    # and the 4096-square product alone then runs for many minutes
    peak = {"float32": matmul_peak(device, torch.float32)}
    if device.type == "cuda" or train.native_bf16():
        peak["bfloat16"] = matmul_peak(device, torch.bfloat16)
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    out = {"device": dev_name, "model": args.model, "data": name, "epochs": args.epochs,
           "batch_size": args.batch_size, "images_per_s": best, "ratio": best["wmlib"] / best["plain"],
           "stacked_models": args.stack if "stacked" in best else None,
           "stacked_vs_one_by_one": best["stacked"] / best["wmlib"] if "stacked" in best else None,
           "bf16_vs_fp32": {k: best[f"{k}-bf16"] / best[k] for k in ("plain", "wmlib")} if bf16_paths else None,
           "train_flops_per_image": flops, "matmul_peak_gflops": peak,
           "gflops": {k: v * flops / 1e9 for k, v in best.items()},
           "share_of_float32_peak": {k: v * flops / 1e9 / peak["float32"] for k, v in best.items()}}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
