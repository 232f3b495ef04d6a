"""Metrics against scikit-learn on random labels, plus input validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descentlab.errors import ConfigError, DataError
from descentlab.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    error_rate,
    precision_recall_f1,
)


@st.composite
def labelled(draw):
    """(y_true, y_pred, n_classes) with some classes possibly never seen or predicted."""
    k = draw(st.integers(1, 6))
    n = draw(st.integers(1, 40))
    labels = st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    return np.array(draw(labels)), np.array(draw(labels)), k


# sklearn warns when only one label occurs; we pass labels= explicitly, so it is moot.
@pytest.mark.filterwarnings("ignore:A single label was found")
@given(labelled())
@settings(max_examples=60, deadline=None)
def test_matches_sklearn(data):
    y_true, y_pred, k = data
    labels = list(range(k))
    assert math.isclose(accuracy(y_true, y_pred), skm.accuracy_score(y_true, y_pred))
    assert math.isclose(error_rate(y_true, y_pred), 1 - skm.accuracy_score(y_true, y_pred))
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, k).numpy(),
        skm.confusion_matrix(y_true, y_pred, labels=labels),
    )
    for average in ("macro", "weighted", "micro", None):
        ours = precision_recall_f1(y_true, y_pred, k, average=average)
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        np.testing.assert_allclose(ours, [p, r, f], atol=1e-12)


@given(labelled())
@settings(max_examples=20, deadline=None)
def test_torch_numpy_and_list_inputs_agree(data):
    y_true, y_pred, k = data
    as_numpy = precision_recall_f1(y_true, y_pred, k)
    as_torch = precision_recall_f1(torch.from_numpy(y_true), torch.from_numpy(y_pred), k)
    as_list = precision_recall_f1(y_true.tolist(), y_pred.astype(np.int32).tolist(), k)
    assert as_numpy == as_torch == as_list


def test_zero_division_is_zero():
    # Class 2 is never predicted and never true; class 1 is predicted but never true.
    y_true = [0, 0, 0]
    y_pred = [0, 1, 0]
    p, r, f = precision_recall_f1(y_true, y_pred, 3, average=None)
    assert p == [1.0, 0.0, 0.0]
    assert r == [2 / 3, 0.0, 0.0]
    assert f == pytest.approx([0.8, 0.0, 0.0])
    assert precision_recall_f1(y_true, y_pred, 3)[2] == pytest.approx(0.8 / 3)


def test_classification_report():
    y_true = torch.tensor([0, 1, 2, 2, 1, 0])
    y_pred = torch.tensor([0, 2, 2, 2, 1, 1])
    report = classification_report(y_true, y_pred, 3, class_names=["a", "b", "c"])
    json.dumps(report)  # JSON-serialisable
    assert report["n_examples"] == 6
    assert report["n_errors"] == 2
    assert report["error_rate"] == pytest.approx(1 / 3)
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert [c["name"] for c in report["per_class"]] == ["a", "b", "c"]
    assert [c["support"] for c in report["per_class"]] == [2, 2, 2]
    c = report["per_class"][2]
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    expected = skm.precision_recall_fscore_support(y_true, y_pred, average="macro")[:3]
    got = report["macro"]
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(expected)
    expected = skm.precision_recall_fscore_support(y_true, y_pred, average="weighted")[:3]
    got = report["weighted"]
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="2 class names for 3 classes"):
        classification_report(y_true, y_pred, 3, class_names=["a", "b"])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        ([0, 1], [0, 1, 1], "different lengths"),
        ([0.0, 1.0], [0, 1], "integer class labels"),
        ([True, False], [0, 1], "integer class labels"),
        ([[0, 1]], [[0, 1]], "1-D"),
        ([], [], "empty"),
        ([0, 3], [0, 1], "label 3 is outside the 3 classes"),
        ([0, 1], [-1, 1], "label -1 is outside"),
        (["a", "b"], [0, 1], "integer class labels"),
    ],
)
def test_invalid_labels_raise_data_error(y_true, y_pred, match):
    with pytest.raises(DataError, match=match):
        confusion_matrix(y_true, y_pred, 3)


def test_invalid_options_raise_config_error():
    with pytest.raises(ConfigError, match="did you mean 'macro'"):
        precision_recall_f1([0, 1], [0, 1], 2, average="marco")
    with pytest.raises(ConfigError, match="n_classes"):
        confusion_matrix([0, 1], [0, 1], 0)
