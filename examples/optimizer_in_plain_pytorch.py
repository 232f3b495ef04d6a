"""Use a descentlab optimizer in an ordinary PyTorch training loop.

    python examples/optimizer_in_plain_pytorch.py
    python examples/optimizer_in_plain_pytorch.py --tiny     # a couple of seconds

descentlab's optimizers are ``torch.optim.Optimizer`` subclasses: swap the line that
builds the optimizer and keep everything else. The loop below is plain PyTorch (a
DataLoader, ``nn.Sequential``, ``F.cross_entropy``) on the 8×8 digits bundled with
scikit-learn. It trains the same network from the same initial weights three times:

1. ``torch.optim.Adam`` and 2. ``descentlab.optim.Adam`` (Algorithm 8.7): the same
   algorithm, so the final weights agree to float32 rounding;
3. ``descentlab.optim.SGD(nesterov=True)`` (Algorithm 8.3) with the book's linear
   learning-rate decay. Nesterov momentum takes its gradient at the look-ahead point
   θ + αv, which the optimizer can only visit if it may re-run the forward and backward
   pass itself: pass ``step`` a *closure*, as below.
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from descentlab.optim import SGD, Adam
from descentlab.optim.schedules import LinearDecay


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    epochs: int,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """The usual loop, except that ``step`` gets a closure; returns the last epoch's loss."""
    for _ in range(epochs):
        total, count = 0.0, 0
        for x, y in loader:

            def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            loss = optimizer.step(closure)  # type: ignore[arg-type]  # returns the closure's loss
            if schedule is not None:
                schedule.step()  # LinearDecay advances once per minibatch
            total += float(loss.detach()) * len(y)
            count += len(y)
    return total / count


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(dim=1) == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--tiny",
        action="store_true",
        default=bool(os.environ.get("DESCENTLAB_EXAMPLES_TINY")),
        help="3 epochs (also: DESCENTLAB_EXAMPLES_TINY=1)",
    )
    args = parser.parse_args(argv)
    epochs = 3 if args.tiny else args.epochs

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)

    torch.manual_seed(0)
    initial = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))

    def fresh() -> tuple[nn.Module, DataLoader]:
        # The same initial weights and the same minibatch order for every optimizer.
        generator = torch.Generator().manual_seed(0)
        data = TensorDataset(x_train, y_train)
        return copy.deepcopy(initial), DataLoader(
            data, batch_size=32, shuffle=True, generator=generator
        )

    results = {}
    for name in ("torch.optim.Adam", "descentlab.optim.Adam", "descentlab.optim.SGD (Nesterov)"):
        model, loader = fresh()
        schedule = None
        if name == "torch.optim.Adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        elif name == "descentlab.optim.Adam":
            optimizer = Adam(model.parameters(), lr=1e-3)
        else:
            optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
            # ε decays linearly to 1% of ε_0 over the run, then stays there (§8.3.1)
            schedule = LinearDecay(optimizer, tau=epochs * len(loader), final_ratio=0.01)
        loss = train(model, optimizer, loader, epochs, schedule)
        results[name] = model
        print(
            f"{name:32s} train loss {loss:.4f}  test accuracy {accuracy(model, x_test, y_test):.2%}"
        )

    a, b = results["torch.optim.Adam"], results["descentlab.optim.Adam"]
    with torch.no_grad():
        gap = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    print(f"largest weight difference, torch Adam vs descentlab Adam: {gap:.2e}")


if __name__ == "__main__":
    main()
