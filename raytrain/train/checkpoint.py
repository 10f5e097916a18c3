"""Self-describing checkpoints: weights, optimizer and schedule state, resolved config, vocabulary.

A checkpoint is one ``checkpoint.pt`` holding only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``: nothing is unpickled from storage we do not control. It carries
the item-vocabulary fingerprint and the model shape so a mismatched dataset or config is refused
before any weights are touched.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import torch

from raytrain import storage
from raytrain.config import Config, from_dict, to_dict

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "raytrain-checkpoint"
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the dataset or model it is being used with."""


def model_shape(config: Config, n_items: int) -> dict[str, Any]:
    """The settings that decide parameter shapes; two checkpoints with equal shapes are interchangeable."""
    model = config.model
    return {
        "name": model.name,
        "n_items": int(n_items),
        "hidden_dim": model.hidden_dim,
        "latent_dim": model.latent_dim,
        "pia": bool(model.pia.enabled),
    }


def make_payload(
    *,
    model_state: dict[str, torch.Tensor],
    optimizer_states: dict[str, Any],
    train_state: dict[str, Any],
    config: Config,
    n_items: int,
    vocab_fingerprint: str,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_state,
        "optimizers": optimizer_states,
        "train_state": train_state,
        "config": to_dict(config),
        "shape": model_shape(config, n_items),
        "vocab_fingerprint": vocab_fingerprint,
        "history": history,
    }


def save_checkpoint(directory: str | os.PathLike, payload: dict[str, Any]) -> str:
    """Write ``checkpoint.pt`` into ``directory`` (local or URI); returns its path."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = storage.join(str(directory), CHECKPOINT_FILE)
    storage.write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(location: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file or a directory holding one (local or URI), weights only.

    Raises:
        FileNotFoundError: nothing at ``location``.
        CheckpointMismatchError: the file is not a raytrain checkpoint.
    """
    location = str(location)
    path = location if location.endswith(".pt") else storage.join(location, CHECKPOINT_FILE)
    return parse_checkpoint(storage.read_bytes(path), path, map_location)


def parse_checkpoint(data: bytes, path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Checkpoint bytes -> payload, refusing anything that is not a raytrain checkpoint of this version."""
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise CheckpointMismatchError(f"{path} is not a loadable raytrain checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} is not a raytrain checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path} has checkpoint format version {payload.get('format_version')}, "
            f"this raytrain reads version {FORMAT_VERSION}"
        )
    return payload


def payload_config(payload: dict[str, Any]) -> Config:
    return from_dict(payload["config"])


def check_compatible(
    payload: dict[str, Any],
    *,
    n_items: int,
    vocab_fingerprint: str | None,
    config: Config | None = None,
    source: str = "checkpoint",
) -> None:
    """Refuse a checkpoint whose vocabulary or model shape differs from what it is used with."""
    if vocab_fingerprint is not None and payload["vocab_fingerprint"] != vocab_fingerprint:
        raise CheckpointMismatchError(
            f"{source} was trained on a different item vocabulary "
            f"(fingerprint {payload['vocab_fingerprint'][:12]}..., data has {vocab_fingerprint[:12]}...); "
            "score or resume with the dataset the model was trained on"
        )
    if payload["shape"]["n_items"] != n_items:
        raise CheckpointMismatchError(
            f"{source} has {payload['shape']['n_items']} items, the data has {n_items}"
        )
    if config is not None:
        wanted = model_shape(config, n_items)
        if payload["shape"] != wanted:
            diff = {k: (payload["shape"].get(k), v) for k, v in wanted.items() if payload["shape"].get(k) != v}
            raise CheckpointMismatchError(
                f"{source} has a different model shape (checkpoint vs config): {diff}"
            )


def model_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the trained module in eval mode from a checkpoint payload (no training YAML needed)."""
    from raytrain.models.build import build_model

    config = payload_config(payload)
    model = build_model(config.model, payload["shape"]["n_items"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointMismatchError(f"checkpoint weights do not fit the model: {err}") from err
    return model.to(device).eval()
