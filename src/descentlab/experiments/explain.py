"""``descentlab explain TOPIC``: worked examples from the source texts, computed live.

The numbers are never typed in: each topic calls the library's own functions, so the
explanation and the code cannot drift apart.

``losses``
    The practical notes' example of why one trains on cross-entropy rather than on the
    classification error: two models, both wrong on one example in three (error 1/3),
    whose average cross-entropy and average squared error differ — the smooth losses see
    that model 2 is more confident when right and less confidently wrong.
``significance``
    How precisely an error rate is known (Wilson intervals) and the "rule of 30" for
    the MNIST validation set, computed by :mod:`descentlab.experiments.stats`.
"""

from __future__ import annotations

from collections.abc import Callable

from descentlab.errors import ConfigError, did_you_mean
from descentlab.experiments.stats import RULE_OF_30, wilson_interval
from descentlab.losses import losses_worked_example

__all__ = ["TOPICS", "explain", "explain_losses", "explain_significance", "losses_table"]


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def losses_table() -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the worked example, one row per (model, example) and a summary.

    Uses :func:`descentlab.losses.losses_worked_example`, whose cross-entropy and MSE
    come from the same ``nll`` and ``mse_softmax`` the trainer minimizes.
    """
    columns = [
        "model",
        "example",
        "computed p",
        "target",
        "correct?",
        "classification error",
        "cross-entropy",
        "squared error (MSE)",
    ]
    rows: list[list[str]] = []
    for model in losses_worked_example():
        names = model["class_names"]
        for i, (p, t, label, ok) in enumerate(
            zip(model["probabilities"], model["targets"], model["labels"], model["correct"]), 1
        ):
            rows.append(
                [
                    model["model"],
                    str(i),
                    " ".join(f"{v:.1f}" for v in p),
                    " ".join(str(int(v)) for v in t) + f" ({names[label]})",
                    "yes" if ok else "no",
                    "",
                    "",
                    "",
                ]
            )
        rows.append(
            [
                model["model"],
                "average",
                "",
                "",
                "",
                f"{model['classification_error']:.4f}",
                _fmt(model["cross_entropy"]),
                _fmt(model["mse"]),
            ]
        )
    return columns, rows


def _text_table(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def explain_losses() -> str:
    """The worked example as a text table with the conclusion, all numbers computed."""
    models = losses_worked_example()
    a, b = models[0], models[1]
    columns, rows = losses_table()
    lines = [
        "Why train on cross-entropy, not on classification error",
        "(the practical notes' example; every number computed by descentlab.losses)",
        "",
        _text_table(columns, rows),
        "",
        f"Both models have classification error {a['classification_error']:.4f} (1 in 3 wrong).",
        f"Average cross-entropy -log p(target): {a['model']} {_fmt(a['cross_entropy'])}, "
        f"{b['model']} {_fmt(b['cross_entropy'])}.",
        f"Average squared error Σ(p - target)²: {a['model']} {_fmt(a['mse'])}, "
        f"{b['model']} {_fmt(b['mse'])}.",
        "",
        "The error rate cannot tell the models apart (and its gradient is zero almost",
        "everywhere); both smooth losses prefer the model that is confident when right and",
        "only mildly wrong when wrong. Cross-entropy also keeps a large gradient on",
        "confidently wrong outputs, where the squared error of a softmax saturates: that is",
        "why classifiers are trained on it (try: descentlab study losses).",
    ]
    return "\n".join(lines)


def explain_significance(n_valid: int = 10000, error: float = 0.0165) -> str:
    """Wilson intervals and the rule of 30 on an MNIST-sized validation set."""
    if not isinstance(n_valid, int) or n_valid < 1:
        raise ConfigError(f"n_valid must be a positive integer, got {n_valid!r}")
    k = round(error * n_valid)
    low, high = wilson_interval(k, n_valid)
    lines = [
        "How much does an error rate measured on a validation set tell you?",
        "",
        f"{k} errors in {n_valid} examples = {100 * k / n_valid:.2f}%; the Wilson 95% interval is "
        f"{100 * low:.2f}%–{100 * high:.2f}%.",
        f"The course notes' rule of 30: a change that affects {RULE_OF_30} examples of the "
        f"validation set (here {100 * RULE_OF_30 / n_valid:.2f}%) is statistically significant.",
        "For two classifiers scored on the same examples, McNemar's test makes this",
        "precise: only the examples exactly one of them gets right count.",
        "descentlab report shows both for every sweep.",
    ]
    return "\n".join(lines)


TOPICS: dict[str, Callable[[], str]] = {
    "losses": explain_losses,
    "significance": explain_significance,
}


def explain(topic: str) -> str:
    """The text of ``topic`` (see :data:`TOPICS`)."""
    if topic not in TOPICS:
        raise ConfigError(f"unknown topic {topic!r}", hint=did_you_mean(topic, list(TOPICS)))
    return TOPICS[topic]()
