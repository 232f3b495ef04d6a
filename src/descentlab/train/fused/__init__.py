"""Many runs at once: K configurations of one dense classifier trained as one batched model.

A sweep over learning rates, optimizer hyperparameters, penalties or seeds trains K
small models of the same architecture on the same data.  Each of them alone leaves the
machine mostly idle and pays the per-step dispatch overhead K times.  Here the K
members are stacked along a leading dimension and trained together::

    W⁽ˡ⁾ ∈ ℝ^{K×out×in},  b⁽ˡ⁾ ∈ ℝ^{K×out}         member k's layer l is W⁽ˡ⁾[k], b⁽ˡ⁾[k]
    x_k  = train.x[order_k[step·B : (step+1)·B]]   each member's own minibatch order
    a⁽ˡ⁾ = baddbmm(b⁽ˡ⁾, h⁽ˡ⁻¹⁾, W⁽ˡ⁾ᵀ)              (K, B, out): one batched product
    cost_k = NLL(z_k, y_k) + λ1_k Σ|W_k| + λ2_k Σ W_k²     (the cost of objective.py)
    ∇ Σ_k cost_k                                   member k's gradient is its own
    θ_k ← update_k(θ_k, g_k)                       the members' optimizer, row by row

* :mod:`.rules` — what fuses (:func:`fuse_problem`): ``logreg`` and ``mlp`` without
  dropout or batch norm, the NLL, every optimizer of :mod:`descentlab.optim` (not
  ``torch.*``), any schedule, no averaging, clipping or gradient logging,
  ``on_nan = "stop"``.  Which runs share a group (:func:`group_key`): equal model, data,
  batch size and other options; members differ in seed, optimizer, lr, schedule,
  optimizer hyperparameters, L1/L2 and stopping.  The forward and backward passes do
  not depend on the optimizer: each optimizer algorithm updates its own block of rows.
  How many members fit (:func:`max_group_size`):
  ``⌊0.5 · free memory / (workers · bytes per member)⌋``.
* :mod:`.updates` — the optimizers' updates with per-member hyperparameter vectors;
  :mod:`.mixed` — members of several optimizers in one group (each on its own rows).
* :mod:`.group` — the stacked parameters, the batched cost and step.
* :mod:`.loop` — the training loop (:func:`fit_group`, :func:`fit_fused`): each member
  is a :class:`~descentlab.train.Trainer` with its own validation, early stopping,
  callbacks and run directory; a member that stops or diverges leaves the group.

Checkpoints and resume: with ``checkpoint_seconds`` (sweeps: 30 s, as their separate
runs) and on SIGINT/SIGTERM every member writes its *own* checkpoint into its run
directory, its row of the stacked state in its optimizer's own schema.  A killed or
interrupted group's members then resume from there, exactly: as a group again
(``fit_group(..., resume=True)``, or the sweep again, which groups runs checkpointed at
the same iteration), or each as a separate run (``fit(..., resume=True)``,
``descentlab train --resume RUN_DIR``), as if checkpointed by a separate run.
"""

from descentlab.train.fused.group import FusedGroup
from descentlab.train.fused.loop import Outcome, fit_fused, fit_group
from descentlab.train.fused.rules import (
    fuse_problem,
    group_key,
    max_group_size,
    member_bytes,
    parameter_count,
)

__all__ = [
    "FusedGroup",
    "Outcome",
    "fit_fused",
    "fit_group",
    "fuse_problem",
    "group_key",
    "max_group_size",
    "member_bytes",
    "parameter_count",
]
