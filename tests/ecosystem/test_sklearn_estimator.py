"""DescentClassifier: scikit-learn's estimator checks, Pipeline, GridSearchCV, semantics."""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from descentlab.data import stratified_split
from descentlab.sklearn import DescentClassifier

# Small enough that the ~55 checks per instance take a second or two.
TINY = {"hidden": (16,), "max_epochs": 5, "optimizer": "adam", "lr": 0.01, "random_state": 0}


@parametrize_with_checks(
    [DescentClassifier(**TINY), DescentClassifier(**TINY, early_stopping=False)],
    # Every check applies and passes; those scikit-learn itself skips here are skipped
    # for the environment (pandas not installed, SCIPY_ARRAY_API unset), not the estimator.
    expected_failed_checks=lambda estimator: {},
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def test_pipeline_on_digits(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    pipe = make_pipeline(
        StandardScaler(),
        DescentClassifier(hidden=(32,), optimizer="adam", lr=1e-3, max_epochs=15, random_state=0),
    )
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) > 0.93
    proba = pipe.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(pipe.classes_[proba.argmax(axis=1)], pipe.predict(X_test))


def test_grid_search_in_a_pipeline_on_iris(iris):
    X, y = iris
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", DescentClassifier(hidden=(8,), max_epochs=30, batch_size=10, random_state=0)),
        ]
    )
    grid = GridSearchCV(
        pipe, {"clf__optimizer": ["sgd", "adam"], "clf__lr": [1e-4, 0.05]}, cv=3, n_jobs=1
    )
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    # lr 1e-4 barely moves in 30 epochs: the search must not pick it
    assert grid.best_params_["clf__lr"] == 0.05
    assert grid.best_score_ > 0.85
    assert grid.best_estimator_.named_steps["clf"].n_features_in_ == 4


def test_labels_of_any_type_round_trip(iris):
    X, y = iris
    X = StandardScaler().fit_transform(X)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = DescentClassifier(hidden=(8,), optimizer="adam", lr=0.01, max_epochs=20, random_state=0)
    clf.fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    pred = clf.predict(X)
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    assert clf.score(X, names) > 0.8
    # the same data with other label values gives the same model (labels are only names)
    other = DescentClassifier(**clf.get_params()).fit(X, np.array([-5, 7, 100])[y])
    np.testing.assert_array_equal(
        np.array([-5, 7, 100])[np.searchsorted(clf.classes_, pred)], other.predict(X)
    )


def test_fitted_attributes(digits_split):
    X_train, _, y_train, _ = digits_split
    X_train = X_train / 16
    clf = DescentClassifier(hidden=(16,), max_epochs=4, optimizer="adam", lr=0.01, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.n_features_in_ == 64
    assert list(clf.classes_) == list(range(10))
    assert clf.n_iter_ == len(clf.loss_curve_) == len(clf.validation_scores_) == 4
    assert clf.stopped_because_ == "max_epochs"
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert isinstance(clf.model_, nn.Module) and isinstance(clf.optimizer_, torch.optim.Optimizer)
    assert len(clf.history_) == 4 and "valid_error" in clf.history_[0]
    n_train = len(y_train) - round(0.1 * len(y_train))
    assert clf.t_ == 4 * n_train


def test_early_stopping_keeps_the_best_epoch(digits_split):
    X_train, _, y_train, _ = digits_split
    X_train = X_train / 16
    # a large lr makes validation accuracy stall quickly
    clf = DescentClassifier(
        hidden=(16,), optimizer="adam", lr=0.05, patience=2, max_epochs=100, random_state=0
    )
    clf.fit(X_train, y_train)
    assert clf.stopped_because_ == "early_stopping"
    scores = clf.validation_scores_
    best = int(np.argmax(scores))  # the first epoch with the best score
    assert clf.n_iter_ == best + 1 + clf.patience  # stopped after `patience` epochs without gain
    assert clf.best_validation_score_ == scores[best]
    # the kept parameters are the best epoch's: rebuild the hold-out (the split's seed is
    # the first draw from random_state) and score on it
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    y_idx = np.searchsorted(clf.classes_, y_train)
    _, valid = stratified_split(y_idx, [0.9, 0.1], seed=seed)
    assert clf.score(X_train[valid], y_train[valid]) == pytest.approx(scores[best])
    assert all(s <= scores[best] for s in scores[best + 1 :])


def test_no_early_stopping_runs_max_epochs_on_all_data(iris):
    X, y = iris
    clf = DescentClassifier(hidden=(4,), max_epochs=3, early_stopping=False, random_state=0)
    clf.fit(StandardScaler().fit_transform(X), y)
    assert clf.n_iter_ == 3 and clf.t_ == 3 * len(y)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.stopped_because_ == "max_epochs"


def test_partial_fit_is_one_epoch_of_plain_minibatch_sgd(iris):
    """partial_fit's epoch equals a hand-written PyTorch SGD loop over the same batches."""
    X, y = iris
    X = StandardScaler().fit_transform(X).astype(np.float32)
    clf = DescentClassifier(hidden=(5,), lr=0.1, batch_size=16, shuffle=False, random_state=3)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    reference = copy.deepcopy(clf.model_)
    clf.partial_fit(X, y)

    x, t = torch.from_numpy(X), torch.from_numpy(y)
    for i in range(0, len(t), 16):  # 150 = 9 × 16 + 6: the last, short batch is kept
        reference.zero_grad()
        nn.functional.cross_entropy(reference(x[i : i + 16]), t[i : i + 16]).backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.1 * p.grad
    for ours, theirs in zip(clf.model_.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2 and clf.t_ == 300


def test_partial_fit_classes_rules(iris):
    X, y = iris
    clf = DescentClassifier(hidden=(4,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # later labels may be absent
    assert list(clf.classes_) == [0, 1, 2] and clf.predict_proba(X).shape == (150, 3)
    clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="differ from those of the first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)
    # fit starts over; partial_fit then continues from the fitted state
    clf.set_params(max_epochs=2, early_stopping=False).fit(X, y)
    assert clf.n_iter_ == 2
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 3


def test_random_state_decides_everything_and_global_rngs_are_untouched(iris):
    X, y = iris
    X = StandardScaler().fit_transform(X)
    params = {"hidden": (8,), "dropout": 0.2, "max_epochs": 3, "random_state": 7}
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    a = DescentClassifier(**params).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    b = DescentClassifier(**params).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = DescentClassifier(**{**params, "random_state": 8}).fit(X, y)
    assert c.loss_curve_ != a.loss_curve_
    # random_state=None: a fresh draw each fit
    d1 = DescentClassifier(**{**params, "random_state": None}).fit(X, y)
    d2 = DescentClassifier(**{**params, "random_state": None}).fit(X, y)
    assert d1.loss_curve_ != d2.loss_curve_


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lr": 0}, r"lr=0 is invalid"),
        ({"lr": "fast"}, r"lr='fast' is invalid"),
        ({"batch_size": 0}, r"batch_size=0 is invalid: it must be an integer >= 1"),
        ({"max_epochs": 2.5}, r"max_epochs=2.5 is invalid"),
        ({"patience": 0}, r"patience=0"),
        ({"validation_fraction": 1.0}, r"validation_fraction=1.0 is invalid.*\(0.0, 1.0\)"),
        ({"dropout": 1.0}, r"dropout=1.0"),
        ({"l2": -1e-4}, r"l2=-0.0001"),
        ({"early_stopping": "yes"}, r"early_stopping='yes' is invalid: it must be True or False"),
        ({"model": "cnn"}, r"model='cnn' is invalid"),
        ({"optimizer": "adamm"}, r"did you mean 'adam'"),
        ({"loss": "hinge"}, r"unknown loss 'hinge'"),
        ({"activation": "softplus"}, r"softplus"),
        ({"optimizer_params": {"lr": 1}}, r"optimizer_params must not set 'lr'"),
        ({"optimizer_params": {"momentun": 0.9}}, r"did you mean 'momentum'"),
        ({"device": "tpu"}, r"device='tpu' is invalid.*auto, cpu, cuda, cuda:N or mps"),
        ({"input_shape": (3, 3)}, r"input_shape=\(3, 3\) holds 9 values but X has 4 features"),
    ],
)
def test_invalid_parameters_are_named_in_the_error(iris, params, message):
    X, y = iris
    clf = DescentClassifier(**{"hidden": (4,), "max_epochs": 1, **params})  # __init__ never checks
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)


def test_data_problems_are_value_errors(iris):
    X, y = iris
    with pytest.raises(ValueError, match=r"at least 2 classes.*1 class"):
        DescentClassifier().fit(X[:10], y[:10])
    with pytest.raises(ValueError, match=r"validation_fraction=0\.1 of 4 examples leaves no"):
        DescentClassifier(max_epochs=1).fit(X[[0, 1, 50, 51]], y[[0, 1, 50, 51]])
    with pytest.raises(ValueError, match="Unknown label type"):
        DescentClassifier().fit(X, y + 0.5)


def test_verbose_prints_one_line_per_epoch(iris, capsys):
    X, y = iris
    for early_stopping in (True, False):
        DescentClassifier(
            hidden=(4,), max_epochs=3, verbose=True, early_stopping=early_stopping
        ).fit(X, y)
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and all(line.startswith("epoch") for line in lines)


def test_a_torch_module_as_the_model_is_copied_not_trained(iris):
    X, y = iris
    X = StandardScaler().fit_transform(X)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    before = copy.deepcopy(module.state_dict())
    # Without early stopping: a 15-example validation set can stop at a weak early epoch.
    clf = DescentClassifier(
        model=module, optimizer="adam", lr=0.02, max_epochs=20, early_stopping=False, random_state=0
    )
    clf.fit(X, y)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])  # the parameter itself is untouched
    assert clf.model_ is not module and clf.score(X, y) > 0.9
    assert clone(clf).get_params()["model"] is not module


def test_lenet_on_images_given_as_rows():
    rng = np.random.default_rng(0)
    X = rng.random((40, 256)).astype(np.float32)
    y = np.arange(40) % 2
    X[y == 1, :128] += 1.0  # class 1: bright top half
    clf = DescentClassifier(
        model="lenet",
        input_shape=(1, 16, 16),
        hidden=(8,),
        max_epochs=5,
        optimizer="adam",
        lr=0.01,
        early_stopping=False,
        random_state=0,
    )
    clf.fit(X, y)
    assert clf.model_.descentlab_spec["input_shape"] == [1, 16, 16]
    assert clf.score(X, y) == 1.0


def test_pickled_estimator_keeps_predicting_and_training(iris):
    X, y = iris
    clf = DescentClassifier(hidden=(4,), max_epochs=2, random_state=0).fit(X, y)
    copy_ = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy_.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy_.partial_fit(X, y)  # shuffle order, optimizer state and RNG streams travel along
    np.testing.assert_array_equal(copy_.predict_proba(X), clf.predict_proba(X))


def test_values_beyond_float32_are_refused_not_trained_on_as_inf(iris):
    X, y = iris
    big = X.copy()
    big[3, 1] = 1e300  # finite in float64, inf in the float32 the model computes in
    with pytest.raises(ValueError, match="too large for float32"):
        DescentClassifier(**TINY).fit(big, y)
    clf = DescentClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="too large for float32"):
        clf.predict(big)
