"""Measure the two ways of shuffling minibatches on MNIST (not a test; run by hand).

    python tests/data/bench_batching.py [--threads N] [--repeats R]

"epoch": one ``index_select`` of the whole permuted training set per epoch, then
contiguous slices (views) of that copy.  "batch": one ``index_select`` per batch from
the unpermuted tensors (what :class:`descentlab.data.Batches` does).  Prints the
median time per epoch of producing every batch (touching each) and of a full epoch of
logistic-regression SGD steps, for batch sizes 20 and 600.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descentlab.data import load_dataset


def epoch_gather(x: torch.Tensor, y: torch.Tensor, bs: int, gen: torch.Generator):
    perm = torch.randperm(x.shape[0], generator=gen)[: (x.shape[0] // bs) * bs]
    xe, ye = x.index_select(0, perm), y.index_select(0, perm)
    for k in range(perm.shape[0] // bs):
        yield xe[k * bs : (k + 1) * bs], ye[k * bs : (k + 1) * bs]


def batch_gather(x: torch.Tensor, y: torch.Tensor, bs: int, gen: torch.Generator):
    perm = torch.randperm(x.shape[0], generator=gen)
    for k in range(x.shape[0] // bs):
        idx = perm[k * bs : (k + 1) * bs]
        yield x.index_select(0, idx), y.index_select(0, idx)


def run(strategy, x, y, bs: int, repeats: int, train: bool) -> float:
    gen = torch.Generator().manual_seed(0)
    w = torch.zeros(784, 10, requires_grad=True)
    b = torch.zeros(10, requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for xb, yb in strategy(x, y, bs, gen):
            if train:
                loss = torch.nn.functional.cross_entropy(xb.flatten(1) @ w + b, yb)
                gw, gb = torch.autograd.grad(loss, (w, b))
                with torch.no_grad():
                    w -= 0.13 * gw
                    b -= 0.13 * gb
            else:
                xb.sum()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first epoch warms up allocators


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist", offline=True)
    x, y = ds.train.x, ds.train.y
    print(f"MNIST train {tuple(x.shape)}, torch {torch.__version__}, {args.threads} threads")
    for train in (False, True):
        for bs in (20, 600):
            row = []
            for name, strategy in (("epoch", epoch_gather), ("batch", batch_gather)):
                ms = 1000 * run(strategy, x, y, bs, args.repeats, train)
                row.append(f"{name} {ms:8.1f} ms")
            what = "logreg SGD epoch" if train else "batches only    "
            print(f"{what} B={bs:4d}: " + " | ".join(row))


if __name__ == "__main__":
    main()
