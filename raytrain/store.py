"""Model store: immutable published versions and an atomically moved ``latest`` alias.

Layout on any pyarrow filesystem (local directory by default)::

    STORE/versions/<version>/checkpoint.pt, items.parquet, metrics.json, config.json, manifest.json
    STORE/aliases/<alias>.json       {"version": ..., "promoted_at": ..., "history": [...]}

``manifest.json`` is written last, so a version without it is an unfinished publish and is never
listed or loaded. An alias is one small JSON object replaced in one step (rename locally, a single
PUT on object stores), so readers see the old or the new model, never a mix. A model reference is
either a run's ``model/`` directory (or the run directory) or ``STORE@VERSION_OR_ALIAS``.

A published checkpoint is the serving copy: optimizer states are dropped (they triple its size and
every scoring actor would load them); the run directory keeps the full checkpoint for resuming.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pyarrow.fs import FileSelector, FileType

from raytrain import storage
from raytrain.train import checkpoint as ckpt

logger = logging.getLogger(__name__)

MODEL_DIR = "model"  # inside a run directory: checkpoint.pt + items.parquet
ITEMS_FILE = "items.parquet"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
GATE_METRIC = "ndcg@100"  # test metric the quality gate compares


class StoreError(ValueError):
    """A store operation was refused (unknown version, failed quality gate, incomplete publish)."""


@dataclass
class ModelArtifact:
    """A model's files without building the module: what a driver needs to check and ship a model.

    ``checkpoint`` holds the raw bytes so a scoring job can put them in Ray's object store once and
    every actor rebuilds the same version from them (no re-resolving an alias that may have moved).
    """

    checkpoint: bytes
    payload: dict[str, Any]
    items: pa.Table  # item_idx, item_id (original ids), popularity
    version: str
    metrics: dict[str, Any]
    source: str  # where it was loaded from (model dir or store version dir)

    @property
    def n_items(self) -> int:
        return int(self.payload["shape"]["n_items"])

    @property
    def vocab_fingerprint(self) -> str:
        return str(self.payload["vocab_fingerprint"])


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


def _now() -> str:
    """UTC time with microseconds: versions published in the same second still sort by publish order."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def _read_items(model_dir: str, n_items: int) -> pa.Table:
    uri = storage.join(model_dir, ITEMS_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri} is missing: a model needs its item vocabulary next to the checkpoint")
    fs, path = storage.resolve(uri)
    items = pq.read_table(path, filesystem=fs).sort_by("item_idx")
    missing = {"item_idx", "item_id", "popularity"} - set(items.column_names)
    if missing:
        raise StoreError(f"{uri} lacks column(s) {sorted(missing)}")
    if items.num_rows != n_items:
        raise StoreError(f"{uri} has {items.num_rows} items but the checkpoint has {n_items}")
    return items


def _serving_blob(payload: dict[str, Any]) -> bytes:
    """The checkpoint without optimizer states (weights, config, shape, vocabulary, history)."""
    buffer = io.BytesIO()
    torch.save({**payload, "optimizers": []}, buffer)
    return buffer.getvalue()


def _test_score(manifest: dict[str, Any]) -> float | None:
    value = manifest.get(f"test_{GATE_METRIC}")
    return None if value is None else float(value)


class ModelStore:
    """Publish, promote and load model versions under one root (local path or URI)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def version_dir(self, version: str) -> str:
        return storage.join(self.root, "versions", version)

    def alias_path(self, alias: str) -> str:
        return storage.join(self.root, "aliases", f"{alias}.json")

    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest publish first."""
        fs, path = storage.resolve(storage.join(self.root, "versions"))
        if fs.get_file_info(path).type == FileType.NotFound:
            return []
        names = [e.base_name for e in fs.get_file_info(FileSelector(path)) if e.type == FileType.Directory]
        manifests = {}
        for name in names:
            uri = storage.join(self.version_dir(name), MANIFEST_FILE)
            if storage.exists(uri):
                manifests[name] = _read_json(uri)
        return sorted(manifests, key=lambda n: (manifests[n].get("published_at", ""), n))

    def publish(self, run_dir: str) -> str:
        """Copy a finished run's best model into the store as a new immutable version.

        The version name is derived from the checkpoint's content, so publishing the same run twice
        returns the existing version instead of creating a duplicate.

        Raises:
            FileNotFoundError: no checkpoint or item vocabulary in ``run_dir``.
            StoreError: the vocabulary does not fit the checkpoint.
        """
        model_dir = _model_dir(run_dir)
        checkpoint_path = storage.join(model_dir, ckpt.CHECKPOINT_FILE)
        blob = storage.read_bytes(checkpoint_path)
        payload = ckpt.parse_checkpoint(blob, checkpoint_path)
        items = _read_items(model_dir, int(payload["shape"]["n_items"]))
        metrics_uri = storage.join(run_dir, METRICS_FILE)
        metrics = _read_json(metrics_uri) if storage.exists(metrics_uri) else {}
        if not metrics.get("test"):
            logger.warning("%s has no test metrics: promoting it over a tested model will need force", run_dir)
        version = _version_name(payload, blob)
        target = self.version_dir(version)
        if storage.exists(storage.join(target, MANIFEST_FILE)):
            logger.info("version %s is already published", version)
            return version
        serving = _serving_blob(payload)
        storage.write_bytes(storage.join(target, ckpt.CHECKPOINT_FILE), serving)
        storage.write_bytes(storage.join(target, ITEMS_FILE), storage.read_bytes(storage.join(model_dir, ITEMS_FILE)))
        _write_json(storage.join(target, METRICS_FILE), metrics)
        _write_json(storage.join(target, CONFIG_FILE), payload["config"])
        _write_json(storage.join(target, MANIFEST_FILE), {  # last: marks the version complete
            "version": version,
            "published_at": _now(),
            "source_run": run_dir,
            "source_checkpoint_sha256": hashlib.sha256(blob).hexdigest(),
            "checkpoint_sha256": hashlib.sha256(serving).hexdigest(),
            "n_items": items.num_rows,
            "vocab_fingerprint": payload["vocab_fingerprint"],
            "data_fingerprint": metrics.get("data_fingerprint"),
            f"test_{GATE_METRIC}": (metrics.get("test") or {}).get(GATE_METRIC),
        })
        logger.info("published %s to %s", version, self.root)
        return version

    def resolve(self, ref: str) -> str:
        """A version name for a version or an alias."""
        if storage.exists(self.alias_path(ref)):
            return str(_read_json(self.alias_path(ref))["version"])
        if storage.exists(storage.join(self.version_dir(ref), MANIFEST_FILE)):
            return ref
        raise StoreError(
            f"{self.root} has no version or alias {ref!r} (versions: {', '.join(self.versions()) or 'none'})"
        )

    def manifest(self, version: str) -> dict[str, Any]:
        return _read_json(storage.join(self.version_dir(version), MANIFEST_FILE))

    def alias(self, alias: str = "latest") -> dict[str, Any] | None:
        """The alias record (version, promoted_at, history), or None when it was never set."""
        uri = self.alias_path(alias)
        return _read_json(uri) if storage.exists(uri) else None

    def promote(self, version: str, *, alias: str = "latest", tolerance: float = 0.01, force: bool = False) -> None:
        """Point ``alias`` at ``version``, refusing a model worse than the current one by > tolerance.

        The gate compares test NDCG@100 (absolute difference). A model without a test score cannot
        replace one that has a score unless forced.

        Raises:
            StoreError: unknown version, or the quality gate failed and ``force`` is False.
        """
        if not storage.exists(storage.join(self.version_dir(version), MANIFEST_FILE)):
            raise StoreError(f"cannot promote {version!r}: not a complete version in {self.root}")
        current = self.alias(alias)
        if current is not None and current["version"] == version:
            logger.info("%s already points at %s", alias, version)
            return
        manifest = self.manifest(version)
        new_score = _test_score(manifest)
        if current is not None and not force:
            old_manifest = self.manifest(current["version"])
            old_score = _test_score(old_manifest)
            if old_score is not None and (new_score is None or new_score < old_score - tolerance):
                raise StoreError(
                    f"quality gate: {version} has test {GATE_METRIC} {new_score} vs {old_score} for the current "
                    f"{alias} ({current['version']}), more than {tolerance} worse; pass force to promote anyway"
                )
            if old_manifest.get("data_fingerprint") != manifest.get("data_fingerprint"):
                logger.warning("quality gate compares test scores measured on different data (retrained on new data)")
        history = ([current["version"]] + current.get("history", []))[:50] if current else []
        _write_json(self.alias_path(alias), {"version": version, "promoted_at": _now(), "history": history})
        logger.info("%s -> %s (test %s %s)", alias, version, GATE_METRIC, new_score)

    def rollback(self, alias: str = "latest") -> str:
        """Point ``alias`` back at the version it held before the last promotion."""
        current = self.alias(alias)
        if not current or not current.get("history"):
            raise StoreError(f"alias {alias!r} has no earlier version to roll back to")
        previous, rest = current["history"][0], current["history"][1:]
        _write_json(self.alias_path(alias), {"version": previous, "promoted_at": _now(), "history": rest})
        logger.info("%s rolled back from %s to %s", alias, current["version"], previous)
        return previous


def _split_ref(ref: str) -> tuple[str, str] | None:
    """``STORE@NAME`` -> (STORE, NAME); None for a model/run directory (which may contain '@')."""
    if "@" not in ref:
        return None
    try:
        _model_dir(ref)
        return None
    except FileNotFoundError:
        root, _, name = ref.rpartition("@")
        if not root or not name:
            raise StoreError(f"model reference {ref!r} is neither a run directory nor STORE@VERSION_OR_ALIAS") from None
        return root, name


def fetch_model(ref: str) -> ModelArtifact:
    """Read ``STORE@VERSION_OR_ALIAS`` or a run / model directory without building the module.

    An alias is resolved here, once: callers that fan out (scoring actors) should use the returned
    bytes or ``version`` so a promotion during the job cannot mix two models in one output.

    Raises:
        FileNotFoundError: no checkpoint at ``ref``.
        StoreError: unknown version/alias or an inconsistent model directory.
        CheckpointMismatchError: the file is not a raytrain checkpoint.
    """
    split = _split_ref(ref)
    if split is not None:
        store = ModelStore(split[0])
        version = store.resolve(split[1])
        model_dir = store.version_dir(version)
        metrics_uri = storage.join(model_dir, METRICS_FILE)
    else:
        model_dir = _model_dir(ref)
        version = ""
        metrics_uri = storage.join(model_dir.rsplit("/", 1)[0], METRICS_FILE)
    checkpoint_path = storage.join(model_dir, ckpt.CHECKPOINT_FILE)
    blob = storage.read_bytes(checkpoint_path)
    payload = ckpt.parse_checkpoint(blob, checkpoint_path)
    if not version:  # an unpublished run: name it as publish would
        version = _version_name(payload, blob)
    return ModelArtifact(
        checkpoint=blob,
        payload=payload,
        items=_read_items(model_dir, int(payload["shape"]["n_items"])),
        version=version,
        metrics=_read_json(metrics_uri) if storage.exists(metrics_uri) else {},
        source=model_dir,
    )


def load_model(ref: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``STORE@VERSION_OR_ALIAS`` or a run / model directory, weights only, in eval mode."""
    artifact = fetch_model(ref)
    return LoadedModel(
        model=ckpt.model_from_payload(artifact.payload, device),
        payload=artifact.payload,
        items=artifact.items,
        version=artifact.version,
        metrics=artifact.metrics,
    )
