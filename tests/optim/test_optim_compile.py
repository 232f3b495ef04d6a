"""``torch.compile`` of an optimizer step does not recompile as the state advances (issue 12).

Before, Adam's step count and the foreach scale factors were Python numbers that dynamo
specializes on: every step recompiled, until it gave up and fell back to eager. Now the
counters are tensors and the traced update is the per-tensor one, written with tensor
arithmetic only. Backend ``eager`` keeps the test fast on CPU; it traces exactly as
inductor would (what recompiles is decided by dynamo's guards, before any backend).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp

MAKERS = {
    "sgd": lambda p, lr: SGD(p, lr=lr, weight_decay=0.01),
    "nesterov": lambda p, lr: SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "adagrad": lambda p, lr: AdaGrad(p, lr=lr, initial_accumulator_value=0.1),
    "rmsprop-centered-momentum": lambda p, lr: RMSProp(p, lr=lr, momentum=0.9, centered=True),
    "adam-amsgrad": lambda p, lr: Adam(p, lr=lr, amsgrad=True, weight_decay=0.01),
    "adam-fused": lambda p, lr: Adam(p, lr=lr, fused=True),
    "adadelta": lambda p, lr: AdaDelta(p, lr=lr),
}


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
@pytest.mark.parametrize("name", list(MAKERS))
def test_compiled_step_compiles_at_most_twice_in_20_steps(name, tensor_lr):
    torch._dynamo.reset()
    counters.clear()
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=gen, requires_grad=True)
    b = torch.randn(3, generator=gen, requires_grad=True)
    lr = torch.tensor(0.01) if tensor_lr else 0.01
    opt = MAKERS[name]([w, b], lr)
    eager_w = w.detach().clone().requires_grad_()
    eager_b = b.detach().clone().requires_grad_()
    eager = MAKERS[name]([eager_w, eager_b], torch.tensor(0.01) if tensor_lr else 0.01)

    @torch.compile(backend="eager")
    def step() -> None:
        opt.step()

    for k in range(20):
        for p, q in ((w, eager_w), (b, eager_b)):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        if tensor_lr:  # a schedule changes a tensor lr in place: no recompile either
            opt.param_groups[0]["lr"].fill_(0.01 / (1 + k))
            eager.param_groups[0]["lr"].fill_(0.01 / (1 + k))
        step()
        eager.step()
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    # The compiled (per-tensor) update computes what the eager update computes.
    torch.testing.assert_close(w, eager_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b, eager_b, rtol=1e-5, atol=1e-6)
