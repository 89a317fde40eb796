"""Throughput of wmlib's training loop against a plain hand-written PyTorch loop.

Both train the same model on the same data held on the device, with the same optimiser and batch
size; the plain loop pre-converts the images to float once and does nothing but forward, loss,
backward and step (on CUDA with the same bf16 autocast and channels_last). Prints images/second
for each and their ratio (target: wmlib >= 0.8x plain).

    python scripts/benchmark_train.py                    # LeNet-5 on Fashion-MNIST (CPU or GPU)
    python scripts/benchmark_train.py --model resnet20 --synthetic-cifar --epochs 2
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from wmlib import data, models, train


def plain_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
               device: torch.device) -> float:
    """The reference: a minimal loop over pre-converted float tensors. Returns seconds."""
    xf = x.float().div(255.0)
    if device.type == "cuda":
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
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_fn(model(xf[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - t0


def wmlib_loop(model: nn.Module, split: data.Split, epochs: int, batch_size: int, lr: float,
               device: torch.device) -> float:
    cfg = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9)
    _sync(device)
    t0 = time.perf_counter()
    train.fit(model, split, cfg, device=device, progress=False)
    _sync(device)
    return time.perf_counter() - t0


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
    results = {"plain": [], "wmlib": []}
    for r in range(args.repeats + 1):  # the first round warms up kernels and allocators
        for which in ("plain", "wmlib"):
            torch.manual_seed(r)
            m = models.build(args.model, channels, classes).to(device)
            secs = plain_loop(m, split.x, split.y, args.epochs, args.batch_size, 0.01, device) if which == "plain" \
                else wmlib_loop(m, split, args.epochs, args.batch_size, 0.01, device)
            if r > 0:
                results[which].append(len(y) * args.epochs / secs)
    best = {k: max(v) for k, v in results.items()}
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    out = {"device": dev_name, "model": args.model, "data": name, "epochs": args.epochs,
           "batch_size": args.batch_size, "images_per_s": best, "ratio": best["wmlib"] / best["plain"]}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
