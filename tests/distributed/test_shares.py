"""The pieces of data parallelism that need no second process: global-batch shares,
the launcher's command line, and the errors a user sees."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from descentlab.cli.main import main
from descentlab.data import Batches
from descentlab.errors import DataError
from descentlab.train.distributed import World


def _split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("world_size", "batch", "drop_last"), [(2, 50, True), (3, 7, False)])
def test_shares_make_up_the_one_process_batches(
    shuffle: bool, world_size: int, batch: int, drop_last: bool
) -> None:
    split = _split(101)
    one = Batches(
        split, batch, shuffle=shuffle, generator=torch.Generator().manual_seed(3),
        drop_last=drop_last,
    )  # fmt: skip
    expected = [y.tolist() for _, y in one]
    ranks = [
        Batches(
            split,
            batch,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(3),
            drop_last=drop_last,
            rank=r,
            world_size=world_size,
            global_batch=True,
        )
        for r in range(world_size)
    ]
    assert all(len(b) == len(one) for b in ranks)
    shares = [[y.tolist() for _, y in b] for b in ranks]
    for k, want in enumerate(expected):
        parts = [shares[r][k] for r in range(world_size)]
        assert [i for part in parts for i in part] == want  # in order, each example once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shares_resume_mid_epoch() -> None:
    split, gen = _split(90), torch.Generator().manual_seed(0)
    b = Batches(split, 20, shuffle=True, generator=gen, rank=1, world_size=2, global_batch=True)
    state = gen.get_state()
    whole = [y.tolist() for _, y in b]
    gen.set_state(state)
    assert [y.tolist() for _, y in b.iter_from(2)] == whole[2:]


def test_a_batch_smaller_than_the_world_is_refused() -> None:
    with pytest.raises(DataError, match="cannot be shared by 4 ranks"):
        Batches(_split(100), 3, rank=0, world_size=4, global_batch=True)
    with pytest.raises(DataError, match="a minibatch of 2 examples"):  # 2 left over
        Batches(_split(42), 10, drop_last=False, rank=0, world_size=3, global_batch=True)


def test_world_share_covers_every_example_once() -> None:
    for n, size in [(10, 3), (10000, 2), (7, 7), (5, 8)]:
        spans = [World(rank=r, size=size).share(n) for r in range(size)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_torchrun_needs_one_out_for_every_rank(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--dataset", "digits", "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "every rank must name the same run directory" in err


def test_a_failed_rank_ends_the_job_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "train", "--dataset", str(tmp_path / "none.npz"),
         "--nproc", "2", "--out", str(tmp_path / "run"), "--dist-timeout", "20"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("descentlab: error: the data-parallel job failed: rank")


def test_more_ranks_than_gpus_is_refused_before_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    # `--nproc 2 --device cuda` on a one-GPU machine: rank 1 has no cuda:1 (nccl would
    # fail later with "duplicate GPU" or an invalid ordinal); checked without a GPU.
    from descentlab.train.distributed import DistributedError, setup

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        DistributedError,
        match=r"cuda:1, but this machine has 1 CUDA device \(start at most one process per GPU",
    ):
        setup(torch.device("cuda"))
