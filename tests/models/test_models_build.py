"""build_model: shapes, parameter counts, validation, specs, dropout and batch-norm modes."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
from torch import nn

from descentlab.errors import ConfigError, DataError
from descentlab.losses import nll
from descentlab.models import (
    MODEL_NAMES,
    LeNet,
    LogisticRegression,
    build_model,
    build_model_from_spec,
    check_model_input,
    count_parameters,
    lenet_min_image_size,
)

MNIST = (1, 28, 28)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("logreg", 784 * 10 + 10),  # 7850
        ("mlp", 784 * 500 + 500 + 500 * 10 + 10),  # 397510
        # conv1 20·1·25+20, conv2 50·20·25+50, dense 800·500+500, out 500·10+10
        ("lenet", 520 + 25050 + 400500 + 5010),  # 431080
    ],
)
def test_parameter_counts_for_mnist(name, expected):
    model = build_model(name, MNIST, 10)
    assert count_parameters(model) == expected
    assert expected == {"logreg": 7850, "mlp": 397510, "lenet": 431080}[name]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_is_logits_of_shape_n_by_classes(name):
    torch.manual_seed(0)
    model = build_model(name, MNIST, 10, init="glorot")
    x = torch.rand(5, *MNIST)
    out = model(x)
    assert out.shape == (5, 10)
    assert out.dtype == torch.float32
    # Logits, not probabilities: rows need not sum to one and may be negative.
    assert not torch.allclose(out.sum(1), torch.ones(5))


def test_flat_and_image_inputs_both_work_for_dense_models():
    for shape in [(64,), (8, 8), (3, 4, 5)]:
        model = build_model("mlp", shape, 3, hidden=(7, 5))
        assert model(torch.rand(4, *shape)).shape == (4, 3)
        assert model.hidden_layers[0].in_features == torch.Size(shape).numel()


def test_mlp_layer_sizes_follow_hidden():
    model = build_model("mlp", (20,), 4, hidden=(16, 8, 6), activation="relu")
    sizes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert sizes == [(20, 16), (16, 8), (8, 6), (6, 4)]


def test_lenet_flattened_size_follows_image_size():
    # 32: 32→28→14→10→5, so 50·5·5 = 1250 inputs to the dense layer.
    model = build_model("lenet", (3, 32, 32), 10)
    assert model.hidden_layers[0].in_features == 1250
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    # Non-square: 28×40 → (4, 7) after the two stages.
    model = build_model("lenet", (1, 28, 40), 10, hidden=(30,))
    assert model.hidden_layers[0].in_features == 50 * 4 * 7
    assert model(torch.rand(2, 1, 28, 40)).shape == (2, 10)
    # (H, W) images get a channel axis added.
    model = build_model("lenet", (28, 28), 10)
    assert model(torch.rand(2, 28, 28)).shape == (2, 10)


def test_lenet_too_small_image_names_minimum_size():
    assert lenet_min_image_size() == 16
    build_model("lenet", (1, 16, 16), 10)  # the smallest that works
    with pytest.raises(ConfigError, match=r"at least 16x16.*got 8x8"):
        build_model("lenet", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="got 15x20"):
        build_model("lenet", (1, 15, 20), 10)
    with pytest.raises(ConfigError, match="image input"):
        build_model("lenet", (784,), 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "mpl"}, "did you mean 'mlp'"),
        ({"name": "lenet5"}, "did you mean 'lenet'"),
        ({"activation": "tahn"}, "did you mean 'tanh'"),
        ({"init": "glorrot"}, "did you mean 'glorot'"),
        ({"dropout": 1.0}, r"\[0, 1\)"),
        ({"dropout": -0.1}, r"\[0, 1\)"),
        ({"dropout": float("nan")}, r"\[0, 1\)"),
        ({"hidden": (500, 0)}, ">= 1"),
        ({"hidden": ()}, "at least one hidden layer"),
        ({"hidden": "500"}, "tuple of layer sizes"),
        ({"hidden": (2.5,)}, "tuple of layer sizes"),
        ({"batch_norm": "yes"}, "True or False"),
        ({"n_classes": 1}, ">= 2"),
        ({"input_shape": (0, 28)}, "positive ints"),
        ({"input_shape": ()}, "positive ints"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs, match):
    args = {"name": "mlp", "input_shape": MNIST, "n_classes": 10, **kwargs}
    name, shape, k = args.pop("name"), args.pop("input_shape"), args.pop("n_classes")
    with pytest.raises(ConfigError, match=match):
        build_model(name, shape, k, **args)


def test_logreg_rejects_options_it_cannot_use():
    with pytest.raises(ConfigError, match="dropout"):
        build_model("logreg", MNIST, 10, dropout=0.5)
    with pytest.raises(ConfigError, match="batch-normalize"):
        build_model("logreg", MNIST, 10, batch_norm=True)


def test_names_are_case_insensitive_and_int_hidden_is_accepted():
    model = build_model("MLP", (10,), 3, hidden=4, activation="ReLU")
    assert model.descentlab_spec["hidden"] == [4]
    assert model.descentlab_spec["activation"] == "relu"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_spec_round_trips_through_json(name):
    kwargs = {} if name == "logreg" else {"hidden": (12,), "dropout": 0.25, "batch_norm": True}
    model = build_model(name, MNIST, 10, init="normal:std=0.05", **kwargs)
    spec = json.loads(json.dumps(model.descentlab_spec))
    rebuilt = build_model_from_spec(spec)
    assert rebuilt.descentlab_spec == model.descentlab_spec
    # The spec's keys are build_model's parameter names (train/run_dir.py relies on it).
    assert build_model(**spec).descentlab_spec == model.descentlab_spec
    rebuilt.load_state_dict(model.state_dict())  # identical architecture
    model.eval()
    rebuilt.eval()
    x = torch.rand(3, *MNIST)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_bad_spec_raises_config_error():
    with pytest.raises(ConfigError, match="keys name, input_shape, n_classes"):
        build_model_from_spec({"name": "mlp"})
    with pytest.raises(ConfigError, match="did you mean 'hidden'"):
        build_model_from_spec({"name": "mlp", "input_shape": [4], "n_classes": 2, "hiden": [3]})


def test_check_model_input():
    model = build_model("mlp", MNIST, 10, hidden=(8,))
    check_model_input(model, MNIST, 10)
    with pytest.raises(DataError, match=r"input shape \(64,\)"):
        check_model_input(model, (64,), 10)
    with pytest.raises(DataError, match="3 classes"):
        check_model_input(model, MNIST, 3)


def test_initialization_is_deterministic_under_manual_seed():
    def build():
        torch.manual_seed(123)
        return build_model("lenet", MNIST, 10, hidden=(20,), init="glorot")

    a, b = build().state_dict(), build().state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_models_copy_and_pickle():
    model = build_model("mlp", (6,), 3, hidden=(4,), dropout=0.5, batch_norm=True)
    x = torch.rand(5, 6)
    model.eval()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        torch.testing.assert_close(clone(x), model(x))
        assert clone.descentlab_spec == model.descentlab_spec


def test_direct_construction_matches_build_model():
    torch.manual_seed(0)
    a = LogisticRegression(MNIST, 10)
    assert all(torch.count_nonzero(p) == 0 for p in a.parameters())
    b = LeNet((1, 20, 20), 4, hidden=(9,))
    assert b(torch.rand(2, 1, 20, 20)).shape == (2, 4)


# --------------------------------------------------------------------------------------
# Dropout and batch norm behave differently in train() and eval()
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_dropout_active_in_train_and_off_in_eval(name):
    torch.manual_seed(0)
    model = build_model(name, MNIST, 10, hidden=(64,), dropout=0.5, init="glorot")
    x = torch.rand(4, *MNIST)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b), "two training passes should drop different units"
    model.eval()
    c, d = model(x), model(x)
    torch.testing.assert_close(c, d)


def test_dropout_zeroes_about_p_of_hidden_units_and_rescales():
    torch.manual_seed(0)
    p = 0.3
    model = build_model("mlp", (50,), 2, hidden=(2000,), dropout=p, init="glorot")
    seen = {}
    model.output.register_forward_hook(lambda m, inp, out: seen.__setitem__("h", inp[0]))
    x = torch.rand(8, 50)
    model.train()
    model(x)
    h_train = seen["h"]
    model.eval()
    model(x)
    h_eval = seen["h"]
    dropped = (h_train == 0) & (h_eval != 0)
    assert abs(dropped.float().mean().item() - p) < 0.02
    kept = h_train != 0
    # Inverted dropout: survivors are scaled by 1/(1-p) during training.
    torch.testing.assert_close(h_train[kept], h_eval[kept] / (1 - p))


def test_batch_norm_uses_batch_stats_in_train_and_running_stats_in_eval():
    torch.manual_seed(0)
    model = build_model("mlp", (10,), 3, hidden=(6,), batch_norm=True)
    bn = model.norms[0]
    assert model.hidden_layers[0].bias is None  # BN's β replaces the bias
    pre = {}
    bn.register_forward_hook(lambda m, inp, out: pre.update(inp=inp[0], out=out))
    x = torch.randn(64, 10) * 3 + 2
    model.train()
    model(x)
    # Training: each unit is normalized with this batch's mean and (biased) variance.
    z = pre["inp"]
    expected = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(pre["out"], expected, atol=1e-5, rtol=1e-4)
    assert int(bn.num_batches_tracked) == 1
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    torch.testing.assert_close(running_mean, 0.1 * z.mean(0))  # momentum 0.1 from 0
    # Evaluation: the running estimates are used and not updated.
    model.eval()
    model(x[:2])
    expected = (pre["inp"] - running_mean) / torch.sqrt(running_var + bn.eps)
    torch.testing.assert_close(pre["out"], expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(bn.running_mean, running_mean)
    assert int(bn.num_batches_tracked) == 1


def test_lenet_batch_norm_and_dropout_apply_to_dense_layers_only():
    model = build_model("lenet", MNIST, 10, hidden=(30, 20), batch_norm=True, dropout=0.5)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [30, 20]
    assert model.conv1.bias is not None


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_learns_a_separable_problem(activation, batch_norm):
    # Gradients must flow through every configuration; a few full-batch steps suffice.
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = build_model("mlp", (5,), 2, hidden=(16,), activation=activation, batch_norm=batch_norm)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(150):
        opt.zero_grad()
        loss = nll(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.95
