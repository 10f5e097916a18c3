"""Ray Train runs on ml-100k: DDP over 2 CPU workers, best-checkpoint selection, resume, refusals."""

from __future__ import annotations

import json
import os

import pytest
import torch

from raytrain.config import replace
from raytrain.train import checkpoint as ckpt
from raytrain.train.job import JobOptions, run_train_job
from raytrain.train.trainer import RunExistsError, fit


@pytest.fixture(scope="module")
def two_worker_run(ml100k_prepared, tmp_path_factory, small_config):
    config = small_config("scaling.num_workers=2")
    out = tmp_path_factory.mktemp("run2")
    metrics = run_train_job(config, JobOptions(output_dir=str(out)))
    return config, out, metrics


def _val_curve(history):
    return [h["val/ndcg@100"] for h in history]


def test_metrics_reported_every_epoch_and_best_checkpoint_selected(two_worker_run):
    config, out, metrics = two_worker_run
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == list(range(1, config.train.epochs + 1))
    for row in history:
        for key in ("train/loss", "val/ndcg@100", "val/recall@20", "val/recall@50", "lambda_A", "beta",
                    "train/users_per_second"):
            assert key in row, key
        assert row["train/users"] == 738  # every training user once per epoch across both ranks
        assert row["val/users"] == 100  # sharded validation covers every user exactly once
    best_epoch = max(history, key=lambda h: h["val/ndcg@100"])["epoch"]
    assert metrics["best_epoch"] == best_epoch
    assert metrics["best_val"]["ndcg@100"] == pytest.approx(max(_val_curve(history)))
    # The exported model is the best epoch's checkpoint, and it loads weights-only.
    payload = ckpt.load_checkpoint(out / "model")
    assert payload["train_state"]["epoch"] == best_epoch
    assert payload["vocab_fingerprint"] == metrics["vocab_fingerprint"]
    # beta anneals linearly over all updates (12 here: 2 per epoch with 369 users and 250 per rank);
    # the last update uses step 11 of 12. lambda_A stays fixed (lambda_scale = 1).
    assert [h["beta"] for h in history] == pytest.approx([config.train.beta_cap * (2 * e - 1) / 12 for e in range(1, 7)])
    assert {h["lambda_A"] for h in history} == {config.model.pia.lambda_a}
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test"]["users"] == 100
    assert on_disk["test"]["ndcg@100"] > 0.12  # a random ranking scores ~0.06 here
    assert set(on_disk["test_groups"]) >= {"11-50", "51-100"}
    assert (out / "training_curves.png").stat().st_size > 10_000
    assert (out / "test_groups.png").stat().st_size > 5_000


def test_one_worker_matches_two_workers_within_noise(two_worker_run, ml100k_prepared, tmp_path):
    config, _, metrics2 = two_worker_run
    run1 = fit(replace(config, ["scaling.num_workers=1"]), ml100k_prepared, storage_path=str(tmp_path), name="one-worker")
    curve1 = _val_curve(run1.history)
    assert len(curve1) == config.train.epochs
    assert abs(max(curve1) - metrics2["best_val"]["ndcg@100"]) < 0.04


def test_killed_worker_resumes_from_last_checkpoint(two_worker_run, ml100k_prepared, tmp_path, small_config):
    config, _, uninterrupted = two_worker_run
    faulty = small_config("scaling.num_workers=2", "train.fail_at_epoch=3")
    run = fit(faulty, ml100k_prepared, storage_path=str(tmp_path), name="faulty")
    assert (tmp_path / "faulty" / "injected_fault_done").exists(), "rank 1 really died"
    # Training continued from epoch 3's checkpoint: every epoch appears once, in order.
    assert [h["epoch"] for h in run.history] == list(range(1, config.train.epochs + 1))
    # Nothing written before the failure was lost: checkpoints from before and after exist.
    checkpoints = sorted(p for p in (tmp_path / "faulty").iterdir() if p.name.startswith("checkpoint_"))
    assert len(checkpoints) >= 2
    assert abs(run.best_metrics["val/ndcg@100"] - uninterrupted["best_val"]["ndcg@100"]) < 0.04


def test_rerun_with_same_name_is_refused_and_resume_continues(ml100k_prepared, tmp_path, small_config):
    config = small_config("train.epochs=2")
    first = fit(config, ml100k_prepared, storage_path=str(tmp_path), name="weekly-2026w47")
    with pytest.raises(RunExistsError, match="--resume"):
        fit(config, ml100k_prepared, storage_path=str(tmp_path), name="weekly-2026w47")
    longer = small_config("train.epochs=3")
    resumed = fit(longer, ml100k_prepared, storage_path=str(tmp_path), name="weekly-2026w47", resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history  # epochs 1-2 came from the checkpoint, not retraining
    with pytest.raises(RunExistsError, match="no run named"):
        fit(config, ml100k_prepared, storage_path=str(tmp_path), name="never-ran", resume=True)


def test_mismatched_checkpoint_is_refused(two_worker_run, ml100k_prepared, small_config):
    _, out, _ = two_worker_run
    payload = ckpt.load_checkpoint(out / "model")
    with pytest.raises(ckpt.CheckpointMismatchError, match="different item vocabulary"):
        ckpt.check_compatible(payload, n_items=ml100k_prepared.n_items, vocab_fingerprint="0" * 64)
    wider = small_config("model.hidden_dim=300")
    with pytest.raises(ckpt.CheckpointMismatchError, match="hidden_dim"):
        ckpt.check_compatible(payload, n_items=ml100k_prepared.n_items,
                              vocab_fingerprint=ml100k_prepared.vocab_fingerprint, config=wider)
    with pytest.raises(ckpt.CheckpointMismatchError, match="items"):
        ckpt.check_compatible(payload, n_items=ml100k_prepared.n_items + 1, vocab_fingerprint=None)


def test_checkpoint_loads_weights_only_and_refuses_foreign_files(tmp_path):
    torch.save({"hello": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(ckpt.CheckpointMismatchError, match="not a raytrain checkpoint"):
        ckpt.load_checkpoint(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": ckpt.FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointMismatchError, match="not a loadable"):
        ckpt.load_checkpoint(tmp_path / "evil.pt")
