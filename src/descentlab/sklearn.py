"""A scikit-learn classifier over descentlab's models, optimizers and trainer.

:class:`DescentClassifier` is an ordinary scikit-learn estimator (``fit``, ``predict``,
``predict_proba``, ``score``, ``partial_fit``, ``get_params``/``set_params``), so it
works in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.  Underneath it is the
library itself::

    fit(X, y), early_stopping=True                   (the default)
        labels  → indices into classes_  (any label type: strings, ints, ...)
        train, valid = stratified split of (X, y), valid = validation_fraction of it
        Trainer(TrainConfig(early_stopping="epochs", patience=..., ...),
                data=Dataset(train, valid), model=build_model(...),
                optimizer=build_optimizer(...)).fit()
        → the parameters of the epoch with the best validation accuracy

    fit(X, y), early_stopping=False
        max_epochs × Trainer.run_epoch() on all of (X, y), never validating

    partial_fit(X, y, classes=...)
        one Trainer.run_epoch() on (X, y), continuing from the current state

One epoch of minibatch steps is the trainer's loop and step: minibatches from
:class:`~descentlab.data.Batches` (reshuffled each epoch when ``shuffle``), and for each
``optimizer.step(closure)`` with the closure of :class:`~descentlab.objective.Objective`
(zero the gradients, ``cost = loss(model(x), y) + l1·Σ|W| + l2·ΣW²``, backpropagate,
return the cost), or the trainer's dense fast path, which computes the same.  The
estimator keeps the model, the optimizer and the generator states between calls; a
trainer is made around them for each ``fit``/``partial_fit``.

Inputs are used as given (no scaling): put a ``StandardScaler`` in front, as for any
gradient-trained scikit-learn model.  Random numbers come from ``random_state`` only:
fitting saves and restores the global ``torch``, ``numpy`` and ``random`` generator
states, so it neither depends on nor disturbs them.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from descentlab.data import Dataset, Split, check_float32_range, stratified_split
from descentlab.errors import ConfigError, DivergenceError, did_you_mean
from descentlab.losses import get_loss
from descentlab.models import MODEL_NAMES, build_model
from descentlab.optim import build_optimizer
from descentlab.train import Callback, NeverValidate, TrainConfig, Trainer, ValidationRecord
from descentlab.train.build import resolve_device

__all__ = ["DescentClassifier"]

# Rows per forward pass at prediction time: bounds memory, and keeps the result of a row
# independent of how many other rows were passed with it (same matmul shapes per chunk).
_PREDICT_CHUNK = 4096


class DescentClassifier(ClassifierMixin, BaseEstimator):
    """A neural-network classifier trained by minibatch SGD (or any chapter-8 optimizer).

    Parameters
    ----------
    model : {"mlp", "logreg", "lenet"} or torch.nn.Module, default="mlp"
        A descentlab model name, or a module mapping ``(N, *input_shape)`` to logits
        ``(N, n_classes)``.  A module is deep-copied at every ``fit``, so the parameter
        itself is never trained; its initial weights are used as they are.
    hidden : tuple of int, default=(500,)
        Hidden layer sizes (``mlp``; the dense layers of ``lenet``).
    activation : {"tanh", "relu", "sigmoid"}, default="tanh"
        Hidden-unit nonlinearity.
    optimizer : str, default="sgd"
        ``sgd, momentum, nesterov, adagrad, rmsprop, rmsprop-nesterov, adam, adadelta``
        or ``torch.<ClassName>`` (see ``descentlab.optim.build_optimizer``).
    lr : float, default=0.01
        Learning rate ε (the Deep Learning Tutorials' MLP uses 0.01 with SGD).
    optimizer_params : dict or None, default=None
        Further optimizer hyperparameters, e.g. ``{"momentum": 0.9}`` or
        ``{"betas": (0.9, 0.99)}``.
    loss : {"nll", "mse"}, default="nll"
        The surrogate loss minimized: negative log-likelihood (cross-entropy), or the
        squared error between softmax probabilities and one-hot targets.
    l1, l2 : float, default=0.0
        Penalty weights λ1, λ2 of ``cost = loss + λ1·Σ|W| + λ2·ΣW²`` (weights only).
    dropout : float, default=0.0
        Dropout rate on hidden layers.
    batch_norm : bool, default=False
        Batch-normalize hidden pre-activations.
    init : str or None, default=None
        Initialization strategy (``"glorot"``, ``"he"``, ``"normal:std=0.01"``...);
        None is the tutorials' recipe.
    input_shape : tuple of int or None, default=None
        Shape each row of ``X`` is reshaped to before the model sees it (e.g.
        ``(1, 28, 28)`` for ``lenet`` on flattened images); None: ``(n_features,)``.
    batch_size : int, default=20
        Minibatch size B (the tutorials' 20); clipped to the number of training examples.
        The last, smaller minibatch of an epoch is kept, so every example is used.
    max_epochs : int, default=200
        Most epochs (passes over the training data) one ``fit`` runs.
    early_stopping : bool, default=True
        Hold out a stratified ``validation_fraction`` of the training data, validate
        after every epoch, stop after ``patience`` epochs without the validation error
        dropping by more than ``min_delta``, and keep the best epoch's parameters.
        False: train on all the data for ``max_epochs`` epochs.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    patience : int, default=10
        Epochs without improvement before stopping (early stopping only).
    min_delta : float, default=0.0
        Smallest decrease of the validation error that counts as an improvement.
    shuffle : bool, default=True
        Reshuffle the training data every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, the validation split, shuffling and dropout.
    device : str, default="auto"
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    verbose : bool or int, default=False
        Print one line per epoch when true or ``>= 1`` (scikit-learn's int levels
        are accepted; every level above 0 prints the same lines).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels; predictions are drawn from them.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.
    n_iter_ : int
        Epochs run (by ``fit``, then one more per ``partial_fit``).
    t_ : int
        Training examples processed (counted once per epoch they were used in).
    loss_curve_ : list of float
        Mean training cost (loss plus penalty) over the minibatches of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy after each epoch (early stopping), else None.
    best_validation_score_ : float or None
        The best of ``validation_scores_`` (its epoch's parameters are the ones kept).
    stopped_because_ : str
        ``"early_stopping"``, ``"max_epochs"`` or ``"partial_fit"``.
    history_ : list of dict
        The trainer's row per epoch (early stopping only; the columns of
        ``metrics.jsonl``, where the ``test_*`` numbers repeat the validation split:
        the estimator holds no test set).
    model_ : torch.nn.Module
        The trained network (returns logits).
    optimizer_ : torch.optim.Optimizer
        Its optimizer, with its state (moments, accumulators) after the last step.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from descentlab.sklearn import DescentClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), DescentClassifier(hidden=(64,), max_epochs=20,
    ...                                                         random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        model: str | nn.Module = "mlp",
        *,
        hidden: Sequence[int] = (500,),
        activation: str = "tanh",
        optimizer: str = "sgd",
        lr: float = 0.01,
        optimizer_params: dict[str, Any] | None = None,
        loss: str = "nll",
        l1: float = 0.0,
        l2: float = 0.0,
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str | None = None,
        input_shape: Sequence[int] | None = None,
        batch_size: int = 20,
        max_epochs: int = 200,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        patience: int = 10,
        min_delta: float = 0.0,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        device: str = "auto",
        verbose: bool | int = False,
    ) -> None:
        # scikit-learn convention: store the parameters untouched; check them in fit.
        self.model = model
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.optimizer_params = optimizer_params
        self.loss = loss
        self.l1 = l1
        self.l2 = l2
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.init = init
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.shuffle = shuffle
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ================================================================ training
    def fit(self, X: Any, y: Any) -> DescentClassifier:
        """Train from scratch on ``(X, y)``; with early stopping, keep the best epoch.

        ``X``: array-like of shape (n_samples, n_features); ``y``: labels of any type.
        """
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        _check_n_classes(len(classes))
        self._check_params()
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        x = self._as_input(X)
        target = torch.as_tensor(y_idx, dtype=torch.int64)
        self._device = _resolve_device(self.device)
        with _isolated_rng(self._device):
            torch.manual_seed(seed)
            self._initialize(x.shape[1:], len(classes), seed)
            self.classes_ = classes
            if self.early_stopping:
                self._fit_early_stopping(x, target, seed)
            else:
                x, target = x.to(self._device), target.to(self._device)
                trainer = self._trainer(x, target, torch.get_rng_state())
                for _ in range(self.max_epochs):
                    self._run_epoch(trainer)
                self._shuffle_state = trainer.generator.get_state()
                self.stopped_because_ = "max_epochs"
            self._torch_rng = torch.get_rng_state()
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> DescentClassifier:
        """One epoch of minibatch steps on ``(X, y)``, continuing from the current state.

        On the first call (before any ``fit``) ``classes`` must list every label that
        will ever appear; later calls may omit it.  No validation split is held out.
        """
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit "
                    "(every label that will appear, e.g. classes=np.unique(y_all))"
                )
            all_classes = np.unique(np.asarray(classes))
            check_classification_targets(all_classes)
            _check_n_classes(len(all_classes))
        elif classes is not None and not np.array_equal(
            np.unique(np.asarray(classes)), self.classes_
        ):
            raise ValueError(
                f"classes={list(np.unique(classes))} differ from those of the first call "
                f"({list(self.classes_)}); refit to change the classes"
            )
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first)
        check_classification_targets(y)
        known = self.classes_ if not first else all_classes
        unknown = np.setdiff1d(np.unique(y), known)
        if unknown.size:
            raise ValueError(
                f"y holds labels {list(unknown)} that are not in classes {list(known)}; "
                "pass every label in classes= on the first call"
            )
        if first:
            self._check_params()
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            self._device = _resolve_device(self.device)
            with _isolated_rng(self._device):
                torch.manual_seed(seed)
                self._initialize(self._reshaped(X.shape[1]), len(all_classes), seed)
                self._torch_rng = torch.get_rng_state()
            self.classes_ = all_classes
        x = self._as_input(X).to(self._device)
        target = torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.int64)
        with _isolated_rng(self._device):
            # dropout masks and the shuffle order continue their own streams
            trainer = self._trainer(x, target.to(self._device), self._torch_rng)
            self._run_epoch(trainer)
            self._shuffle_state = trainer.generator.get_state()
            self._torch_rng = torch.get_rng_state()
        self.stopped_because_ = "partial_fit"
        return self

    def _initialize(self, input_shape: Sequence[int], n_classes: int, seed: int) -> None:
        """Fresh model, optimizer, shuffle generator and counters."""
        if isinstance(self.model, nn.Module):
            model = copy.deepcopy(self.model)
        else:
            model = build_model(
                self.model,
                tuple(input_shape),
                n_classes,
                hidden=self.hidden,
                activation=self.activation,
                dropout=self.dropout,
                batch_norm=self.batch_norm,
                init=self.init,
            )
        self.model_ = model.to(self._device).train()
        self.optimizer_ = build_optimizer(
            self.optimizer, list(self.model_.parameters()), **self._optimizer_hparams()
        )
        # Generator states (tensors) rather than generators: they pickle.
        self._shuffle_state = torch.Generator().manual_seed(seed).get_state()
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = None
        self.best_validation_score_: float | None = None
        self.history_: list[dict[str, Any]] = []

    def _optimizer_hparams(self) -> dict[str, Any]:
        extra = dict(self.optimizer_params or {})
        return {"lr": self.lr, **extra}

    def _config(self, seed: int, n_train: int, early_stopping: str) -> TrainConfig:
        return TrainConfig(
            dataset="arrays",
            model=self.model if isinstance(self.model, str) else type(self.model).__name__,
            optimizer=self.optimizer,
            lr=self.lr,
            loss=self.loss,
            l1=self.l1,
            l2=self.l2,
            batch_size=self._effective_batch_size(n_train),
            shuffle=self.shuffle,
            drop_last=False,
            max_epochs=self.max_epochs,
            early_stopping=early_stopping,
            patience=self.patience,
            min_delta=self.min_delta,
            restore_best=True,
            seed=seed,
            device=str(self._device),
            quiet=not self.verbose,
        )

    def _data(self, train: Split, valid: Split) -> Dataset:
        return Dataset(
            name="arrays",
            train=train,
            valid=valid,
            # The trainer scores a test split at each new best; there is none here, and
            # scoring the validation split again costs little and changes nothing.
            test=valid,
            n_classes=len(self.classes_),
            input_shape=tuple(train.x.shape[1:]),
            class_names=[str(c) for c in self.classes_],
        )

    def _trainer(self, x: torch.Tensor, y: torch.Tensor, torch_rng: torch.Tensor) -> Trainer:
        """A trainer over this estimator's model, optimizer and generator streams, for
        epochs on all of ``(x, y)`` without validation."""
        split = Split(x, y)
        trainer = Trainer(
            self._config(0, len(y), "none"),
            data=self._data(split, split),
            model=self.model_,
            optimizer=self.optimizer_,
            stopper=NeverValidate(),
        )
        # The trainer seeds the generators from its config; the estimator's own streams win.
        torch.set_rng_state(torch_rng)
        trainer.generator.set_state(self._shuffle_state)
        return trainer

    def _run_epoch(self, trainer: Trainer) -> None:
        """One epoch of the trainer's loop; its mean cost goes to ``loss_curve_``."""
        try:
            trainer.run_epoch()
            mean, _ = trainer.progress.interval.take()
        except DivergenceError:
            mean = float("nan")
        if not np.isfinite(mean):
            raise DivergenceError(
                f"non-finite training loss in epoch {self.n_iter_ + 1} (lr {self.lr:.3g})",
                hint="lower lr, or standardize the inputs (StandardScaler)",
            )
        n = int(trainer.data.train.y.shape[0])
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(mean)
        if self.verbose:
            print(f"epoch {self.n_iter_:4d} | train loss {mean:.4f}", flush=True)

    def _fit_early_stopping(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
        """The trainer's loop with Keras-style epoch patience on a stratified hold-out."""
        n = len(y)
        f = float(self.validation_fraction)
        train_idx, valid_idx = stratified_split(y.numpy(), [1.0 - f, f], seed=seed)
        if len(valid_idx) == 0 or len(train_idx) == 0:
            raise ValueError(
                f"validation_fraction={f} of {n} examples leaves "
                f"{'no validation' if len(valid_idx) == 0 else 'no training'} example; "
                "use more data, another validation_fraction, or early_stopping=False"
            )
        train = Split(x[torch.as_tensor(train_idx)], y[torch.as_tensor(train_idx)])
        valid = Split(x[torch.as_tensor(valid_idx)], y[torch.as_tensor(valid_idx)])
        trainer = Trainer(
            self._config(seed, len(train), "epochs"),
            data=self._data(train, valid),
            model=self.model_,
            optimizer=self.optimizer_,
            callbacks=[PrintEpoch()] if self.verbose else [],
        )
        result = trainer.fit()
        self.model_ = result.model
        self._shuffle_state = trainer.generator.get_state()
        self.history_ = result.history
        self.loss_curve_ = [float(row["train_nll"]) for row in result.history]
        self.validation_scores_ = [1.0 - float(row["valid_error"]) for row in result.history]
        self.best_validation_score_ = 1.0 - float(result.summary["best_valid_error"])
        self.n_iter_ = int(result.summary["epochs_run"])
        self.t_ = self.n_iter_ * len(train)
        self.stopped_because_ = str(result.summary["stopped_because"])

    def _effective_batch_size(self, n: int) -> int:
        # As scikit-learn's MLPClassifier: a minibatch larger than the data is all of it.
        return min(int(self.batch_size), n)

    # ============================================================== prediction
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        logits = self._logits(X)
        return torch.softmax(logits, dim=1).numpy()

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed stably from the logits."""
        return torch.log_softmax(self._logits(X), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (a label from ``classes_``)."""
        index = self._logits(X).argmax(dim=1).numpy()  # checks fitted before classes_ is read
        return self.classes_[index]

    def _logits(self, X: Any) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        x = self._as_input(X)
        model = self.model_
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                parts = [
                    model(x[i : i + _PREDICT_CHUNK].to(self._device)).double().cpu()
                    for i in range(0, len(x), _PREDICT_CHUNK)
                ]
        finally:
            model.train(was_training)
        return torch.cat(parts)

    # ================================================================ plumbing
    def _as_input(self, X: np.ndarray) -> torch.Tensor:
        """Rows of ``X`` as a float32 tensor of shape ``(N, *input_shape)`` (a copy)."""
        shape = self._reshaped(X.shape[1])
        check_float32_range(np.asarray(X), "X")  # a ValueError, as scikit-learn's checks
        return torch.tensor(np.asarray(X), dtype=torch.float32).reshape(len(X), *shape)

    def _reshaped(self, n_features: int) -> tuple[int, ...]:
        if self.input_shape is None:
            return (n_features,)
        shape = tuple(int(s) for s in self.input_shape)
        if int(np.prod(shape)) != n_features:
            raise ConfigError(
                f"input_shape={shape} holds {int(np.prod(shape))} values but X has "
                f"{n_features} features per row",
                hint="pass an input_shape whose product is the number of columns",
            )
        return shape

    def _check_params(self) -> None:
        """scikit-learn checks parameters in fit, not __init__; each error names one."""

        def number(name: str, low: float, high: float = np.inf, *, closed: str = "both") -> None:
            value = getattr(self, name)
            ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            if ok:
                ok = (low <= value if closed in ("both", "left") else low < value) and (
                    value <= high if closed in ("both", "right") else value < high
                )
            if not ok:
                lo = "[" if closed in ("both", "left") else "("
                hi = "]" if closed in ("both", "right") else ")"
                raise ConfigError(
                    f"{name}={value!r} is invalid: it must be a number in {lo}{low}, {high}{hi}",
                    hint=f"fix DescentClassifier({name}=...)",
                )

        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"{name}={value!r} is invalid: it must be an integer >= {low}",
                    hint=f"fix DescentClassifier({name}=...)",
                )

        if not isinstance(self.model, nn.Module) and self.model not in MODEL_NAMES:
            raise ConfigError(
                f"model={self.model!r} is invalid: use a name or a torch.nn.Module",
                hint=did_you_mean(str(self.model), MODEL_NAMES),
            )
        get_loss(self.loss)  # raises ConfigError naming the valid losses
        number("lr", 0.0, closed="right")
        number("l1", 0.0)
        number("l2", 0.0)
        number("dropout", 0.0, 1.0, closed="left")
        number("validation_fraction", 0.0, 1.0, closed="neither")
        number("min_delta", 0.0)
        integer("batch_size", 1)
        integer("max_epochs", 1)
        integer("patience", 1)
        for name in ("early_stopping", "shuffle", "batch_norm"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} is invalid: it must be True or False"
                )
        # scikit-learn's estimators take verbose as an int level (0, 1, 2, ...)
        verbose = self.verbose
        if not isinstance(verbose, bool | np.bool_ | int | np.integer) or verbose < 0:
            raise ConfigError(
                f"verbose={verbose!r} is invalid: it must be True/False or an integer >= 0"
            )
        params = self.optimizer_params
        if params is not None and not isinstance(params, dict):
            raise ConfigError(
                f"optimizer_params={params!r} is invalid: it must be a dict or None",
                hint='e.g. optimizer_params={"momentum": 0.9}',
            )
        if params and "lr" in params:
            raise ConfigError(
                "optimizer_params must not set 'lr'", hint="use DescentClassifier(lr=...)"
            )


class PrintEpoch(Callback):
    """``verbose=True`` with early stopping: one line per epoch (each epoch validates)."""

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
        print(
            f"epoch {row.epoch:4d} | train loss {row.train_nll:.4f} | "
            f"validation accuracy {1.0 - row.valid_error:.2%}",
            flush=True,
        )


def _check_n_classes(n: int) -> None:
    if n < 2:
        raise ValueError(
            f"DescentClassifier needs at least 2 classes to learn from, but y has {n} class"
        )


def _resolve_device(name: str) -> torch.device:
    known = name in ("auto", "cpu", "cuda", "mps") or (
        isinstance(name, str) and name.startswith("cuda:") and name[5:].isdigit()
    )
    if not known:
        raise ConfigError(
            f"device={name!r} is invalid: use auto, cpu, cuda, cuda:N or mps",
            hint="fix DescentClassifier(device=...)",
        )
    return resolve_device(name)


@contextlib.contextmanager
def _isolated_rng(device: torch.device) -> Iterator[None]:
    """Run with private copies of the global RNGs: restore torch, numpy and random after."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
