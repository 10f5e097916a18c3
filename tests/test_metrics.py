"""Liang's NDCG@k / Recall@k on tiny hand-computed cases, and the all-reducible sums."""

import math

import pytest
import torch

from raytrain.metrics import MetricSums, user_metrics

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")


def csr(rows: list[list[int]], n_items: int) -> torch.Tensor:
    dense = torch.zeros(len(rows), n_items)
    for row, items in enumerate(rows):
        dense[row, items] = 1.0
    return dense.to_sparse_csr()


def test_hand_computed_ndcg_and_recall_with_fold_in_excluded():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    # Item 1 is fold-in (excluded), so the ranking is 0, 2, 3, 4, 5; held-out {2, 5}.
    result = user_metrics(scores, csr([[1]], 6), csr([[2, 5]], 6), ks=(1, 2, 3, 5))
    idcg = 1.0 + 1.0 / math.log2(3)
    assert result["ndcg@1"].item() == 0.0
    assert result["recall@1"].item() == 0.0
    assert result["ndcg@2"].item() == pytest.approx((1 / math.log2(3)) / idcg)
    assert result["recall@2"].item() == pytest.approx(0.5)
    assert result["ndcg@3"].item() == pytest.approx((1 / math.log2(3)) / idcg)
    assert result["recall@3"].item() == pytest.approx(0.5)
    assert result["ndcg@5"].item() == pytest.approx((1 / math.log2(3) + 1 / math.log2(6)) / idcg)
    # Fewer held-out items (2) than k (5): recall divides by min(k, |held_out|).
    assert result["recall@5"].item() == pytest.approx(1.0)


def test_idcg_sums_over_min_k_and_held_out_positions():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    # All 4 held-out items ranked 1..4: perfect at every k (IDCG uses min(k, 4) positions).
    result = user_metrics(scores, csr([[]], 6), csr([[0, 1, 2, 3]], 6), ks=(2, 4, 6))
    for k in (2, 4, 6):
        assert result[f"ndcg@{k}"].item() == pytest.approx(1.0)
        assert result[f"recall@{k}"].item() == pytest.approx(1.0)
    # Held-out {4, 5} ranked last: recall@2 = 0, ndcg@6 = (1/log2 6 + 1/log2 7) / (1 + 1/log2 3).
    result = user_metrics(scores, csr([[]], 6), csr([[4, 5]], 6), ks=(2, 6))
    assert result["recall@2"].item() == 0.0
    expected = (1 / math.log2(6) + 1 / math.log2(7)) / (1 + 1 / math.log2(3))
    assert result["ndcg@6"].item() == pytest.approx(expected)


def test_ties_among_held_out_items_do_not_change_the_metrics():
    # Three held-out items tie at the top: any order gives NDCG@3 = 1.
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    result = user_metrics(scores, csr([[]], 6), csr([[0, 1, 2]], 6), ks=(3,))
    assert result["ndcg@3"].item() == pytest.approx(1.0)
    # A tie straddling the cut-off between two held-out items: rank 2 is a hit either way.
    scores = torch.tensor([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]])
    result = user_metrics(scores, csr([[]], 6), csr([[1, 2]], 6), ks=(2,))
    assert result["ndcg@2"].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert result["recall@2"].item() == pytest.approx(0.5)


def test_users_with_empty_held_out_are_excluded_from_sums_and_counts():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.2], [0.1, 0.2, 0.3, 0.4]])
    sums = MetricSums.zeros(ks=(2,))
    sums.add_batch(scores, csr([[1], [0]], 4), csr([[0, 3], []], 4))
    means = sums.means()
    assert means["users"] == 1
    # User 0: ranking 0, 2, 3 -> hit at rank 1 only; IDCG over 2 positions.
    assert means["ndcg@2"] == pytest.approx(1.0 / (1 + 1 / math.log2(3)))
    assert means["recall@2"] == pytest.approx(0.5)


def test_k_larger_than_the_catalogue_is_clamped():
    result = user_metrics(torch.tensor([[0.3, 0.2, 0.1]]), csr([[]], 3), csr([[2]], 3), ks=(100,))
    assert result["recall@100"].item() == pytest.approx(1.0)
    assert result["ndcg@100"].item() == pytest.approx(1 / math.log2(4))


def test_activity_groups_by_fold_in_count():
    n_items = 200
    fold_in = [list(range(n)) for n in (3, 7, 30, 60, 120)]
    held_out = [[199]] * 5
    scores = torch.zeros(5, n_items)
    scores[:, 199] = 1.0  # every user ranks its held-out item first
    sums = MetricSums.zeros()
    sums.add_batch(scores, csr(fold_in, n_items), csr(held_out, n_items))
    means = sums.means()
    assert means["users"] == 5
    for group in ("<5", "5-10", "11-50", "51-100", "100+"):
        assert means[f"users/{group}"] == 1
        assert means[f"ndcg@100/{group}"] == pytest.approx(1.0)
    assert "mask_variance" not in means  # no diagnostic accumulated


def test_sums_round_trip_through_a_tensor_and_add_up_across_shards():
    torch.manual_seed(0)
    scores = torch.randn(6, 30)
    fold_in = csr([[0, 1], [2], [3, 4, 5], [6], [7, 8], [9]], 30)
    held_out = csr([[10, 11], [12], [], [13, 14, 15], [16], [17, 18]], 30)
    whole = MetricSums.zeros()
    whole.add_batch(scores, fold_in, held_out)
    first, second = MetricSums.zeros(), MetricSums.zeros()
    rows = torch.arange(6)
    dense_fold, dense_held = fold_in.to_dense(), held_out.to_dense()
    first.add_batch(scores[:3], dense_fold[rows < 3].to_sparse_csr(), dense_held[rows < 3].to_sparse_csr())
    second.add_batch(scores[3:], dense_fold[rows >= 3].to_sparse_csr(), dense_held[rows >= 3].to_sparse_csr())
    combined = MetricSums.from_tensor(first.to_tensor() + second.to_tensor())
    assert torch.allclose(combined.to_tensor(), whole.to_tensor())
    assert (first + second).means() == pytest.approx(whole.means(), nan_ok=True)
    assert whole.means()["users"] == 5
    with pytest.raises(ValueError):
        MetricSums.from_tensor(torch.zeros(3))
