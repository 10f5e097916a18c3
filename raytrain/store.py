"""Model store: immutable published versions and an atomically moved ``latest`` alias.

Layout on any pyarrow filesystem (local directory by default)::

    STORE/versions/<version>/checkpoint.pt, items.parquet, metrics.json, manifest.json
    STORE/aliases/<alias>.json       {"version": ..., "promoted_at": ..., "history": [...]}

``manifest.json`` is written last, so a version without it is an unfinished publish and is never
loaded. An alias is one small JSON object replaced in one step (rename locally, a single PUT on
object stores), so readers see the old or the new model, never a mix. A model reference is either a
run's ``model/`` directory (or the run directory) or ``STORE@VERSION_OR_ALIAS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raytrain import storage
from raytrain.train import checkpoint as ckpt

logger = logging.getLogger(__name__)

MODEL_DIR = "model"  # inside a run directory: checkpoint.pt + items.parquet
ITEMS_FILE = "items.parquet"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"


class StoreError(ValueError):
    """A store operation was refused (unknown version, failed quality gate, incomplete publish)."""


@dataclass
class LoadedModel:
    """A model ready for scoring: module in eval mode plus its vocabulary and identity."""

    model: torch.nn.Module
    payload: dict[str, Any]
    items: pa.Table  # item_idx, item_id (original ids), popularity
    version: str
    metrics: dict[str, Any]

    @property
    def n_items(self) -> int:
        return int(self.payload["shape"]["n_items"])

    @property
    def vocab_fingerprint(self) -> str:
        return str(self.payload["vocab_fingerprint"])


def _read_json(uri: str) -> dict[str, Any]:
    return json.loads(storage.read_bytes(uri).decode())


def _write_json(uri: str, data: dict[str, Any]) -> None:
    storage.write_bytes(uri, (json.dumps(data, indent=2) + "\n").encode())


def _model_dir(run_or_model_dir: str) -> str:
    """Accept a run directory or its ``model/`` directory."""
    if storage.exists(storage.join(run_or_model_dir, ckpt.CHECKPOINT_FILE)):
        return run_or_model_dir
    candidate = storage.join(run_or_model_dir, MODEL_DIR)
    if storage.exists(storage.join(candidate, ckpt.CHECKPOINT_FILE)):
        return candidate
    raise FileNotFoundError(f"no {ckpt.CHECKPOINT_FILE} in {run_or_model_dir} or {candidate}")


def _version_name(payload: dict[str, Any], blob: bytes) -> str:
    """Content-derived, so the same checkpoint always gets the same version name."""
    return f"{payload['config'].get('name', 'model')}-{hashlib.sha256(blob).hexdigest()[:12]}"


def _read_items(model_dir: str) -> pa.Table:
    fs, path = storage.resolve(storage.join(model_dir, ITEMS_FILE))
    return pq.read_table(path, filesystem=fs)


class ModelStore:
    """Publish, promote and load model versions under one root (local path or URI)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def version_dir(self, version: str) -> str:
        return storage.join(self.root, "versions", version)

    def alias_path(self, alias: str) -> str:
        return storage.join(self.root, "aliases", f"{alias}.json")

    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first."""
        fs, path = storage.resolve(storage.join(self.root, "versions"))
        from pyarrow.fs import FileSelector, FileType

        if fs.get_file_info(path).type == FileType.NotFound:
            return []
        entries = fs.get_file_info(FileSelector(path))
        names = sorted(e.base_name for e in entries if e.type == FileType.Directory)
        return [n for n in names if storage.exists(storage.join(self.version_dir(n), MANIFEST_FILE))]

    def publish(self, run_dir: str) -> str:
        """Copy a finished run's best model into the store as a new immutable version.

        The version name is derived from the checkpoint's content, so publishing the same run twice
        returns the existing version instead of creating a duplicate.
        """
        model_dir = _model_dir(run_dir)
        checkpoint_path = storage.join(model_dir, ckpt.CHECKPOINT_FILE)
        blob = storage.read_bytes(checkpoint_path)
        payload = ckpt.parse_checkpoint(blob, checkpoint_path)
        metrics_uri = storage.join(run_dir, METRICS_FILE)
        metrics = _read_json(metrics_uri) if storage.exists(metrics_uri) else {}
        version = _version_name(payload, blob)
        target = self.version_dir(version)
        if storage.exists(storage.join(target, MANIFEST_FILE)):
            logger.info("version %s is already published", version)
            return version
        storage.write_bytes(storage.join(target, ckpt.CHECKPOINT_FILE), blob)
        storage.write_bytes(storage.join(target, ITEMS_FILE), storage.read_bytes(storage.join(model_dir, ITEMS_FILE)))
        _write_json(storage.join(target, METRICS_FILE), metrics)
        _write_json(storage.join(target, MANIFEST_FILE), {
            "version": version,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source_run": run_dir,
            "checkpoint_sha256": hashlib.sha256(blob).hexdigest(),
            "vocab_fingerprint": payload["vocab_fingerprint"],
            "data_fingerprint": metrics.get("data_fingerprint"),
            "test_ndcg@100": metrics.get("test", {}).get("ndcg@100"),
        })
        logger.info("published %s to %s", version, self.root)
        return version

    def resolve(self, ref: str) -> str:
        """A version name for a version or an alias."""
        if storage.exists(self.alias_path(ref)):
            return str(_read_json(self.alias_path(ref))["version"])
        if ref in self.versions():
            return ref
        raise StoreError(f"{self.root} has no version or alias {ref!r} (versions: {', '.join(self.versions()) or 'none'})")

    def manifest(self, version: str) -> dict[str, Any]:
        return _read_json(storage.join(self.version_dir(version), MANIFEST_FILE))

    def promote(self, version: str, *, alias: str = "latest", tolerance: float = 0.01, force: bool = False) -> None:
        """Point ``alias`` at ``version``, refusing a model worse than the current one by > tolerance.

        Raises:
            StoreError: unknown version, or the quality gate failed and ``force`` is False.
        """
        if version not in self.versions():
            raise StoreError(f"cannot promote {version!r}: not a complete version in {self.root}")
        current = _read_json(self.alias_path(alias)) if storage.exists(self.alias_path(alias)) else None
        new_score = self.manifest(version).get("test_ndcg@100")
        if current is not None and not force:
            old_score = self.manifest(current["version"]).get("test_ndcg@100")
            if old_score is not None and (new_score is None or new_score < old_score - tolerance):
                raise StoreError(
                    f"quality gate: {version} has test ndcg@100 {new_score} vs {old_score} for the current "
                    f"{alias} ({current['version']}), more than {tolerance} worse; pass force to promote anyway"
                )
        history = ([current["version"]] + current.get("history", []))[:50] if current else []
        _write_json(self.alias_path(alias), {
            "version": version,
            "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "history": history,
        })
        logger.info("%s -> %s (test ndcg@100 %s)", alias, version, new_score)

    def rollback(self, alias: str = "latest") -> str:
        """Point ``alias`` back at the version it held before the last promotion."""
        current = _read_json(self.alias_path(alias)) if storage.exists(self.alias_path(alias)) else None
        if not current or not current.get("history"):
            raise StoreError(f"alias {alias!r} has no earlier version to roll back to")
        previous, rest = current["history"][0], current["history"][1:]
        _write_json(self.alias_path(alias), {
            "version": previous,
            "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "history": rest,
        })
        return previous


def load_model(ref: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``STORE@VERSION_OR_ALIAS`` or a run / model directory, weights only."""
    if "@" in ref:
        root, _, name = ref.rpartition("@")
        store = ModelStore(root)
        version = store.resolve(name)
        model_dir = store.version_dir(version)
        metrics_uri = storage.join(model_dir, METRICS_FILE)
    else:
        model_dir = _model_dir(ref)
        version = ""
        metrics_uri = storage.join(model_dir.rsplit("/", 1)[0], METRICS_FILE)
    checkpoint_path = storage.join(model_dir, ckpt.CHECKPOINT_FILE)
    blob = storage.read_bytes(checkpoint_path)
    payload = ckpt.parse_checkpoint(blob, checkpoint_path, map_location=device)
    if not version:  # an unpublished run: name it as publish would
        version = _version_name(payload, blob)
    metrics = _read_json(metrics_uri) if storage.exists(metrics_uri) else {}
    return LoadedModel(
        model=ckpt.model_from_payload(payload, device),
        payload=payload,
        items=_read_items(model_dir),
        version=version,
        metrics=metrics,
    )
