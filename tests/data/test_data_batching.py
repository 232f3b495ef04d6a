"""Batches: sizes, drop_last, seeded shuffling, sharding, and exact mid-epoch resume."""

from __future__ import annotations

import pytest
import torch

from descentlab.data import Batches, Split
from descentlab.errors import ConfigError, DataError


def _split(n: int, d: int = 3) -> Split:
    # Row i is filled with i, so a batch's rows tell which examples it holds.
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, d)
    return Split(x, torch.arange(n) % 10)


def _ids(batches: Batches | list) -> list[int]:
    return [int(v) for xb, _ in batches for v in xb[:, 0].tolist()]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_tutorial_sizes_drop_last() -> None:
    b = Batches(_split(50_000, 1), 600)
    assert len(b) == 83 and b.examples_per_epoch == 49_800
    sizes = [xb.shape[0] for xb, _ in b]
    assert sizes == [600] * 83
    b20 = Batches(_split(50_000, 1), 20)
    assert len(b20) == 2500


def test_keep_partial_last_batch() -> None:
    b = Batches(_split(1050, 1), 100, drop_last=False)
    assert len(b) == 11
    assert [xb.shape[0] for xb, _ in b] == [100] * 10 + [50]
    assert _ids(b) == list(range(1050))


def test_unshuffled_batches_are_views_in_order() -> None:
    split = _split(100)
    b = Batches(split, 30)
    batches = list(b)
    assert _ids(batches) == list(range(90))
    for xb, yb in batches:
        assert xb.untyped_storage().data_ptr() == split.x.untyped_storage().data_ptr()
        assert yb.untyped_storage().data_ptr() == split.y.untyped_storage().data_ptr()
    torch.testing.assert_close(batches[1][1], split.y[30:60])


def test_labels_travel_with_inputs_when_shuffled() -> None:
    split = _split(257)
    for xb, yb in Batches(split, 16, shuffle=True, generator=_gen(0), drop_last=False):
        assert torch.equal(yb, xb[:, 0].long() % 10)


def test_shuffle_deterministic_per_seed_and_changes_per_epoch() -> None:
    split = _split(1000)
    a = Batches(split, 50, shuffle=True, generator=_gen(7))
    b = Batches(split, 50, shuffle=True, generator=_gen(7))
    c = Batches(split, 50, shuffle=True, generator=_gen(8))
    epoch_a1, epoch_b1, epoch_c1 = _ids(a), _ids(b), _ids(c)
    assert epoch_a1 == epoch_b1
    assert epoch_a1 != epoch_c1
    epoch_a2 = _ids(a)
    assert epoch_a2 != epoch_a1  # a new permutation every epoch
    assert epoch_a2 == _ids(b)


def test_every_example_once_per_epoch() -> None:
    split = _split(1003)
    b = Batches(split, 64, shuffle=True, generator=_gen(1), drop_last=False)
    for _ in range(3):
        ids = _ids(b)
        assert sorted(ids) == list(range(1003))
    dropped = Batches(split, 64, shuffle=True, generator=_gen(1))
    ids = _ids(dropped)
    assert len(ids) == len(set(ids)) == 15 * 64


def test_shuffle_without_generator_follows_torch_seed() -> None:
    split = _split(200)
    torch.manual_seed(123)
    first = _ids(Batches(split, 10, shuffle=True))
    torch.manual_seed(123)
    assert _ids(Batches(split, 10, shuffle=True)) == first
    assert first != list(range(200))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world_size, n", [(2, 1000), (3, 1001), (4, 999)])
def test_sharding_disjoint_equal_and_covering(shuffle: bool, world_size: int, n: int) -> None:
    split = _split(n)
    shards = []
    for rank in range(world_size):
        b = Batches(
            split,
            7,
            shuffle=shuffle,
            generator=_gen(5),
            drop_last=False,
            rank=rank,
            world_size=world_size,
        )
        shards.append(_ids(b))
    per_rank = n // world_size
    assert all(len(s) == per_rank for s in shards)
    union = set().union(*map(set, shards))
    assert len(union) == per_rank * world_size  # disjoint
    if not shuffle:
        assert shards[1][0] == per_rank  # contiguous blocks in storage order


def test_sharded_len_and_global_batch() -> None:
    b = Batches(_split(1000), 100, rank=1, world_size=4)
    assert len(b) == 2 and b.examples_per_epoch == 200


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("k", [0, 1, 7, 12])
def test_resume_mid_epoch_equals_uninterrupted(shuffle: bool, k: int) -> None:
    split = _split(777)
    gen = _gen(42)
    b = Batches(split, 64, shuffle=shuffle, generator=gen, drop_last=False)
    list(b)  # epoch 1
    state = gen.get_state()  # what the trainer checkpoints before epoch 2
    uninterrupted = list(b)
    after = _ids(b)  # epoch 3

    # A fresh process: new generator and Batches, state restored, start at batch k.
    gen2 = torch.Generator()
    gen2.set_state(state)
    resumed_batches = Batches(split, 64, shuffle=shuffle, generator=gen2, drop_last=False)
    resumed = list(resumed_batches.iter_from(k))
    assert len(resumed) == len(uninterrupted) - k
    for (xa, ya), (xb, yb) in zip(uninterrupted[k:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert _ids(resumed_batches) == after  # and the following epoch matches too


def test_iter_from_draws_the_permutation_immediately() -> None:
    gen = _gen(0)
    b = Batches(_split(100), 10, shuffle=True, generator=gen)
    before = gen.get_state()
    b.iter_from(3)  # not consumed
    assert not torch.equal(gen.get_state(), before)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_batch_size_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        Batches(_split(10), bad)  # type: ignore[arg-type]


def test_batch_larger_than_data() -> None:
    with pytest.raises(DataError, match=r"batch_size 600 is larger than the 500 examples"):
        Batches(_split(500), 600)
    with pytest.raises(DataError, match=r"per rank"):
        Batches(_split(500), 300, rank=0, world_size=2)
    b = Batches(_split(500), 600, drop_last=False)  # one partial batch is fine
    assert len(b) == 1 and _ids(b) == list(range(500))


def test_other_arguments_validated() -> None:
    split = _split(10)
    with pytest.raises(ConfigError, match="rank"):
        Batches(split, 2, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="world_size"):
        Batches(split, 2, world_size=0)
    with pytest.raises(ConfigError, match="generator"):
        Batches(split, 2, shuffle=True, generator=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="start_batch"):
        Batches(split, 2).iter_from(6)
    with pytest.raises(DataError, match="shard"):
        Batches(_split(3), 1, rank=0, world_size=4)
    with pytest.raises(DataError, match="labels"):
        Batches((torch.zeros(4, 2), torch.zeros(3)), 2)
    with pytest.raises(ConfigError):
        Batches("not a split", 2)


def test_accepts_xy_pair_and_repr() -> None:
    b = Batches((torch.zeros(10, 2), torch.zeros(10, dtype=torch.int64)), 4)
    assert len(b) == 2 and "batches=2" in repr(b)
