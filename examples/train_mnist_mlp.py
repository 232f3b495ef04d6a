"""Train the Deep Learning Tutorials' MLP on MNIST from Python, then use the result.

    python examples/train_mnist_mlp.py                 # the tutorial's MLP, 30 epochs
    python examples/train_mnist_mlp.py --tiny          # seconds: 1,000 examples, 2 epochs
    python examples/train_mnist_mlp.py --dataset digits --out runs/digits-mlp

MNIST is found in $DESCENTLAB_DATA (or downloaded once, with checksums). The run starts
from the ``dlt-mlp`` preset (500 tanh units, L2 1e-4, SGD lr 0.01, minibatches of 20,
the tutorial's early stopping), a callback prints each new best, and the trained model
is then scored per class and, when ``--out`` is given, read back with ``load_run``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

import descentlab as dl
from descentlab.train import Callback, resolve


class PrintNewBest(Callback):
    """One line each time the validation error reaches a new best."""

    def on_validation(self, trainer: Any, row: dict[str, Any]) -> None:
        if row["improved"]:
            print(
                f"epoch {row['epoch']:3d}: validation error {row['valid_error']:.2%}, "
                f"test error there {row['test_error']:.2%}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", help="mnist (default), fashion-mnist, digits")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="run directory to write (default: none)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        default=bool(os.environ.get("DESCENTLAB_EXAMPLES_TINY")),
        help="a few seconds on 1,000 examples per split (also: DESCENTLAB_EXAMPLES_TINY=1)",
    )
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {"max_epochs": args.max_epochs, "quiet": True, "out": args.out}
    if args.tiny:
        overrides.update(subset=1000, hidden=(64,), batch_size=50, max_epochs=2, patience=100)
    config = resolve(preset_name="dlt-mlp", overrides={"dataset": args.dataset, **overrides})
    result = dl.fit(config=config, callbacks=[PrintNewBest()])

    s = result.summary
    print(
        f"best validation error {s['best_valid_error']:.2%} at epoch {s['best_epoch']}; "
        f"test error there {s['test_error']:.2%}; {s['epochs_run']} epochs in "
        f"{s['train_seconds']:.1f}s, stopped by {s['stopped_because']}"
    )

    # result.model holds the best parameters: score the test split class by class.
    data = result.data
    assert data is not None
    with torch.inference_mode():
        predicted = result.model.eval()(data.test.x).argmax(dim=1)
    report = dl.classification_report(data.test.y, predicted, data.n_classes, data.class_names)
    worst = max(report["per_class"], key=lambda row: 1 - row["f1"])
    print(f"test accuracy {report['accuracy']:.2%}; hardest class {worst['name']!r} ", end="")
    print(f"(F1 {worst['f1']:.3f})")

    if args.out:  # the run directory holds everything needed to use the model later
        run = dl.load_run(args.out)
        raw = data.test.x[:5] * (data.scale or 1.0)  # raw inputs, as a user would have them
        print(f"load_run({args.out!r}).predict(5 test images) = {run.predict(raw).tolist()}")


if __name__ == "__main__":
    main()
