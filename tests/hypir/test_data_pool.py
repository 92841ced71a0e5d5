"""hypir.data.PairPool: the release's training-pair pool (``_dequeue_and_enqueue``)."""
import pytest
import torch

from hypir.data import PairPool


def _batch(i, b=2):
    """Batch ``i``: every pixel of pair k holds 10 i + k (gt) and -(10 i + k) (lq), prompt "i.k"."""
    ids = torch.arange(b, dtype=torch.float32) + 10 * i
    gt = ids.view(b, 1, 1, 1).expand(b, 3, 4, 4).clone()
    return gt, -gt[:, :, :2, :2].clone(), [f"{i}.{k}" for k in range(b)]


def test_pool_fills_then_hands_out_pairs_from_earlier_batches_kept_together():
    pool = PairPool(6)
    for i in range(3):  # filling: each batch passes through unchanged
        gt, lq, prompts = _batch(i)
        out = pool.exchange(gt, lq, prompts, seed=i)
        assert torch.equal(out[0], gt) and torch.equal(out[1], lq) and out[2] == prompts
    seen = set()
    for i in range(3, 40):
        gt, lq, prompts = _batch(i)
        ogt, olq, oprompts = pool.exchange(gt, lq, prompts, seed=i)
        ids = ogt[:, 0, 0, 0].tolist()
        assert all(x < 10 * i for x in ids)  # pairs from earlier batches, never this one's
        assert torch.equal(olq, -ogt[:, :, :2, :2])  # gt, lq and prompt stay one pair
        assert oprompts == [f"{int(x) // 10}.{int(x) % 10}" for x in ids]
        seen.add(tuple(sorted(int(x) // 10 for x in ids)))
        held = sorted(pool.gt[:, 0, 0, 0].tolist())  # the pool keeps every pair not yet handed out
        assert len(held) == 6 and len(set(held)) == 6
    assert any(a != b for a, b in seen)  # batches mix pairs of different source batches


def test_pool_state_round_trip_and_seeded_shuffle():
    a, b = PairPool(4), PairPool(4)
    for i in range(3):
        a.exchange(*_batch(i), seed=i)
    b.load_state_dict(a.state_dict())
    for i in range(3, 6):
        x, y = a.exchange(*_batch(i), seed=i), b.exchange(*_batch(i), seed=i)
        assert torch.equal(x[0], y[0]) and x[2] == y[2]
    c = PairPool(4)
    c.load_state_dict(a.state_dict())
    assert not torch.equal(a.exchange(*_batch(6), seed=1)[0], c.exchange(*_batch(6), seed=2)[0])


def test_pool_errors_name_the_problem():
    with pytest.raises(ValueError, match="^queue_size: 5 is not a multiple of the batch size 2"):
        PairPool(5).exchange(*_batch(0), seed=0)
    pool = PairPool(4)
    pool.exchange(*_batch(0), seed=0)
    gt, lq, p = _batch(1)
    with pytest.raises(ValueError, match="^gt, lq: the pool holds"):
        pool.exchange(gt[:, :, :3], lq, p, seed=0)
    with pytest.raises(ValueError, match="^gt, lq, prompts: expected one of each"):
        pool.exchange(gt, lq, p[:1], seed=0)
    with pytest.raises(ValueError, match="^resume: the checkpoint's pair pool holds 4 pairs"):
        PairPool(8).load_state_dict(pool.state_dict())
    with pytest.raises(ValueError, match="^queue_size"):
        PairPool(0)
