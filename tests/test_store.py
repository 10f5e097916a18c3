"""Model store: publish is idempotent, promote is quality-gated, rollback and refs resolve."""

from __future__ import annotations

import json

import pytest
import torch

from model_runs import items_table, make_run_dir, tiny_config
from raytrain.store import ModelStore, StoreError, fetch_model, load_model
from raytrain.train.checkpoint import CheckpointMismatchError, load_checkpoint

FINGERPRINT = "f" * 64


@pytest.fixture()
def runs(tmp_path):
    items = items_table(50)
    return {
        name: make_run_dir(tmp_path / name, items, FINGERPRINT, test_ndcg=ndcg, seed=seed, config=tiny_config(name))
        for name, ndcg, seed in [("good", 0.30, 0), ("better", 0.32, 1), ("worse", 0.25, 2), ("untested", None, 3)]
    }


def test_publish_is_immutable_and_idempotent(tmp_path, runs):
    store = ModelStore(str(tmp_path / "store"))
    version = store.publish(str(runs["good"]))
    assert store.publish(str(runs["good"] / "model")) == version  # same content, same version
    assert store.versions() == [version]
    manifest = store.manifest(version)
    assert manifest["test_ndcg@100"] == pytest.approx(0.30)
    assert manifest["vocab_fingerprint"] == FINGERPRINT and manifest["n_items"] == 50
    served = load_checkpoint(store.version_dir(version))
    assert served["optimizers"] == []  # serving copy: no optimizer state
    assert json.loads((tmp_path / "store" / "versions" / version / "config.json").read_text())["name"] == "good"


def test_unfinished_publish_is_invisible(tmp_path, runs):
    store = ModelStore(str(tmp_path / "store"))
    version = store.publish(str(runs["good"]))
    (tmp_path / "store" / "versions" / version / "manifest.json").unlink()
    assert store.versions() == []
    with pytest.raises(StoreError, match="no version or alias"):
        store.resolve(version)


def test_quality_gate_refuses_worse_model_unless_forced(tmp_path, runs):
    store = ModelStore(str(tmp_path / "store"))
    good, better, worse, untested = (store.publish(str(runs[n])) for n in ("good", "better", "worse", "untested"))
    store.promote(good)
    store.promote(better)
    assert store.resolve("latest") == better
    with pytest.raises(StoreError, match="quality gate"):
        store.promote(worse)
    with pytest.raises(StoreError, match="quality gate"):
        store.promote(untested)  # no test score cannot replace a tested model
    assert store.resolve("latest") == better
    store.promote(good, tolerance=0.05)  # within tolerance
    assert store.resolve("latest") == good
    store.promote(worse, force=True)
    assert store.resolve("latest") == worse
    assert store.rollback() == good
    assert store.rollback() == better
    assert store.resolve("latest") == better


def test_promote_unknown_version_and_empty_rollback(tmp_path, runs):
    store = ModelStore(str(tmp_path / "store"))
    with pytest.raises(StoreError, match="not a complete version"):
        store.promote("nope-123")
    with pytest.raises(StoreError, match="no earlier version"):
        store.rollback()
    with pytest.raises(StoreError, match="no version or alias 'latest'"):
        fetch_model(f"{tmp_path / 'store'}@latest")


def test_load_model_by_alias_version_and_run_dir(tmp_path, runs):
    store_root = tmp_path / "store"
    store = ModelStore(str(store_root))
    version = store.publish(str(runs["good"]))
    store.promote(version)
    by_alias = load_model(f"{store_root}@latest")
    by_version = load_model(f"{store_root}@{version}")
    by_run = load_model(str(runs["good"]))
    assert by_alias.version == by_version.version == by_run.version == version
    assert by_run.metrics["test"]["ndcg@100"] == pytest.approx(0.30)
    assert by_alias.n_items == 50 and by_alias.items.num_rows == 50
    assert not by_alias.model.training
    x = torch.eye(50)[:3].to_sparse_csr()
    torch.testing.assert_close(by_alias.model(x).logits, by_run.model(x).logits)


def test_run_dir_with_at_sign_is_a_directory(tmp_path):
    run = make_run_dir(tmp_path / "runs@2026w47", items_table(20), FINGERPRINT)
    assert fetch_model(str(run)).n_items == 20


def test_broken_model_dirs_are_refused(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        fetch_model(str(tmp_path / "missing"))
    (runs["good"] / "model" / "items.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="items.parquet"):
        fetch_model(str(runs["good"]))
    (runs["better"] / "model" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="not a loadable raytrain checkpoint"):
        fetch_model(str(runs["better"]))
