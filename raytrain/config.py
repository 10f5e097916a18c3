"""Run configuration: frozen dataclasses loaded from YAML plus dotted ``key=value`` overrides.

One resolved :class:`Config` describes a whole run. It is saved inside every checkpoint, so
scoring and resumption never need the original YAML. Worker processes receive it as a plain
dict (``to_dict``) and turn it back with ``from_dict`` on their first line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A configuration file or override is malformed (unknown key, wrong type, bad value)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Planted-structure generator settings (used when ``data.format == "synthetic"``)."""

    n_users: int = 20_000
    n_items: int = 2_000
    n_clusters: int = 20
    mean_items_per_user: float = 40.0
    activity_sigma: float = 0.8  # lognormal sigma of per-user activity
    popularity_exponent: float = 1.0  # Zipf-like exponent of item popularity
    cluster_affinity: float = 0.8  # share of a user's items drawn from their taste cluster
    n_blocks: int = 8  # parallel generation blocks (Ray Data read tasks); the data does not depend on it
    seed: int = 1  # generator seed (data.seed drives the split, this one the interactions)


@dataclass(frozen=True)
class DataConfig:
    """Where the raw interactions are and how to prepare them (Liang et al. 2018)."""

    path: str = ""  # raw source (file, directory, glob or URI) or a prepared dataset directory
    format: str = "synthetic"  # movielens | netflix | msd | parquet | csv | synthetic | prepared
    prepared_path: str = ""  # where the prepared dataset is written / read
    threshold: float = 4.0  # positives: value >= threshold
    min_items_per_user: int = 5
    min_users_per_item: int = 0
    n_heldout: float = 100  # held-out users per split: a count (>= 1) or a fraction of users (< 1)
    heldout_fraction: float = 0.2  # items held out per validation/test user
    seed: int = 1
    user_col: str = "user_id"  # column map for the generic parquet/csv reader
    item_col: str = "item_id"
    value_col: str = "value"
    timestamp_col: str = ""
    id_dtype: str = "auto"  # generic csv/parquet ids: auto (sniffed) | int64 | string
    num_output_files: int = 0  # files per split in the prepared output (0: one per ~4M raw interactions)
    read_blocks: int = 0  # raw-input read tasks (0: ~64 MiB byte ranges); the prepared output does not depend on it
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class PIAConfig:
    """Personalized Item Alignment (paper Eq. 8-10 and Algorithm 1)."""

    enabled: bool = False
    lambda_a: float = 0.5  # initial alignment weight
    lambda_scale: float = 1.0  # multiply lambda_a by this on a validation plateau; 1 = fixed
    patience: int = 5  # epochs without improvement before scaling (the paper's rho)
    lambda_max: float = 64.0  # cap for the escalating schedule
    form: str = "exact"  # exact (Eq. 9, anchor-spread term kept) | centroid (drop it)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "multvae"  # multvae | multdae | recvae
    hidden_dim: int = 600
    latent_dim: int = 200
    epsilon: float = 0.5  # input-mask drop rate (1 - rho of the paper's Bernoulli mask)
    recvae_gamma: float = 0.005  # RecVAE user-dependent KL weight: beta_u = gamma * |x_u|
    recvae_encoder_epochs: int = 3  # RecVAE alternating updates: encoder passes per epoch
    recvae_decoder_epochs: int = 1
    pia: PIAConfig = field(default_factory=PIAConfig)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 500
    eval_batch_size: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta_cap: float = 0.2
    anneal_fraction: float = 1.0  # share of total updates over which beta rises to beta_cap
    seed: int = 1
    eval_every: int = 1
    bf16: bool = False  # bf16 autocast (GPU only; ignored on CPU)
    shuffle_buffer: int = 10_000  # rows each worker shuffles locally per epoch (0: block order only)
    cache_train: bool = True  # materialize the train split in the object store once (False: re-read per epoch)
    num_checkpoints_to_keep: int = 2
    max_failures: int = 2
    fail_at_epoch: int = -1  # fault injection for tests: rank 1 exits once after this epoch


@dataclass(frozen=True)
class ScalingSettings:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    read_cpus: float = 0.25  # CPU per Ray Data read task feeding the workers (reads are light)


@dataclass(frozen=True)
class TuneConfig:
    num_samples: int = 12
    max_concurrent_trials: int = 0  # 0: derived from cluster resources and workers per trial
    max_epochs: int = 30
    grace_period: int = 3
    reduction_factor: int = 3
    beta_min: float = 0.05
    beta_max: float = 1.0
    lambdas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    epsilon_min: float = 0.2
    epsilon_max: float = 0.8
    lrs: tuple[float, ...] = ()  # empty: keep train.lr
    seed: int = 1


@dataclass(frozen=True)
class ScoreConfig:
    top_n: int = 100
    batch_size: int = 1024
    concurrency: int = 1
    num_gpus: float = 0.0
    cpus_per_actor: float = 0.5
    window_days: int = 0  # 0: all history; else only interactions (and users) within N days
    splits: tuple[str, ...] = ("train", "val", "test")  # prepared input: whose histories to score
    max_unknown_fraction: float = 0.5  # raw input: refuse when more users than this know only unknown items
    rows_per_file: int = 200_000  # output Parquet files hold at least this many rows (fewer files)
    torch_threads: int = 0  # intra-op threads per scoring actor; 0: Ray's default (the actor's CPUs)
    shuffle_partitions: int = 0  # raw input group-by-user partitions; 0: one per ~1M interactions (max 200)
    fail_at_batch: int = -1  # fault injection for tests: each actor raises on this batch (0-based)


@dataclass(frozen=True)
class Config:
    name: str = "pia"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    tune: TuneConfig = field(default_factory=TuneConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML, JSON and Ray payloads."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return plain(config)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation, converting the lossless cases (int -> float)."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(annotation, value, prefix=f"{key}.")
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type, _ellipsis) = typing.get_args(annotation)
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {annotation}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads exponents without a dot ("5e-4", Python's repr of 1e-07) as strings.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys under '{prefix or '<root>'}': {', '.join(sorted(known))}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def from_dict(values: Mapping[str, Any]) -> Config:
    """Build a validated :class:`Config`; unknown keys and wrong types raise :class:`ConfigError`."""
    config = _build(Config, values)
    validate(config)
    return config


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["model.pia.lambda_a=0.5", ...]`` into a nested dict; values are parsed as YAML."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        values = dict(loaded or {})
    values = _merge(values, parse_overrides(overrides))
    try:
        return from_dict(values)
    except ConfigError as err:
        where = f" (in {path})" if path is not None else ""
        raise ConfigError(f"{err}{where}") from None


def replace(config: Config, overrides: Sequence[str]) -> Config:
    """A copy of ``config`` with dotted overrides applied (validated)."""
    return from_dict(_merge(to_dict(config), parse_overrides(overrides)))


MODEL_NAMES = ("multvae", "multdae", "recvae")
DATA_FORMATS = ("movielens", "netflix", "msd", "parquet", "csv", "synthetic", "prepared")
PIA_FORMS = ("exact", "centroid")
ID_DTYPES = ("auto", "int64", "string")


def validate(config: Config) -> None:
    """Reject values that type-check but make no sense, with the key named."""
    checks = [
        (config.model.name in MODEL_NAMES, f"model.name must be one of {MODEL_NAMES}"),
        (config.data.format in DATA_FORMATS, f"data.format must be one of {DATA_FORMATS}"),
        (config.model.pia.form in PIA_FORMS, f"model.pia.form must be one of {PIA_FORMS}"),
        (0.0 <= config.model.epsilon < 1.0, "model.epsilon (input-mask drop rate) must be in [0, 1)"),
        (config.model.hidden_dim > 0 and config.model.latent_dim > 0, "model dims must be positive"),
        (config.model.pia.lambda_a >= 0, "model.pia.lambda_a must be >= 0"),
        (config.model.pia.lambda_scale >= 1.0, "model.pia.lambda_scale must be >= 1 (1 = fixed)"),
        (config.model.pia.patience >= 1, "model.pia.patience must be >= 1"),
        (config.model.pia.lambda_max >= config.model.pia.lambda_a, "model.pia.lambda_max must be >= lambda_a"),
        (config.train.epochs >= 1, "train.epochs must be >= 1"),
        (config.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (config.train.lr > 0, "train.lr must be > 0"),
        (config.train.beta_cap >= 0, "train.beta_cap must be >= 0"),
        (0.0 < config.train.anneal_fraction <= 1.0 or config.train.anneal_fraction == 0.0,
         "train.anneal_fraction must be in [0, 1] (0: beta is at its cap from the start)"),
        (config.train.eval_every >= 1, "train.eval_every must be >= 1"),
        (config.train.shuffle_buffer >= 0, "train.shuffle_buffer must be >= 0 (0: block order only)"),
        (config.scaling.num_workers >= 1, "scaling.num_workers must be >= 1"),
        (config.scaling.cpus_per_worker > 0, "scaling.cpus_per_worker must be > 0"),
        (config.data.n_heldout > 0, "data.n_heldout must be > 0 (a count >= 1 or a fraction < 1)"),
        (0.0 < config.data.heldout_fraction < 1.0, "data.heldout_fraction must be in (0, 1)"),
        (config.data.min_items_per_user >= 1, "data.min_items_per_user must be >= 1"),
        (config.data.min_users_per_item >= 0, "data.min_users_per_item must be >= 0"),
        (config.data.n_heldout < 1 or float(config.data.n_heldout).is_integer(),
         "data.n_heldout must be a whole count (>= 1) or a fraction of users (< 1)"),
        (config.data.id_dtype in ID_DTYPES, f"data.id_dtype must be one of {ID_DTYPES}"),
        (config.data.num_output_files >= 0 and config.data.read_blocks >= 0,
         "data.num_output_files and data.read_blocks must be >= 0 (0: automatic)"),
        (config.data.synthetic.n_users >= 1 and config.data.synthetic.n_items >= 2
         and 1 <= config.data.synthetic.n_clusters <= config.data.synthetic.n_items,
         "data.synthetic needs n_users >= 1, n_items >= 2 and 1 <= n_clusters <= n_items"),
        (config.data.synthetic.mean_items_per_user >= 1 and config.data.synthetic.n_blocks >= 1,
         "data.synthetic.mean_items_per_user and n_blocks must be >= 1"),
        (0.0 <= config.data.synthetic.cluster_affinity <= 1.0, "data.synthetic.cluster_affinity must be in [0, 1]"),
        (config.score.top_n >= 1, "score.top_n must be >= 1"),
        (config.score.batch_size >= 1 and config.score.concurrency >= 1, "score.batch_size and score.concurrency must be >= 1"),
        (config.score.num_gpus >= 0 and config.score.cpus_per_actor > 0, "score.num_gpus must be >= 0 and score.cpus_per_actor > 0"),
        (set(config.score.splits) <= {"train", "val", "test"} and len(config.score.splits) > 0,
         "score.splits must be a non-empty subset of train, val, test"),
        (config.score.window_days >= 0, "score.window_days must be >= 0 (0: all history)"),
        (config.tune.num_samples >= 1, "tune.num_samples must be >= 1"),
        (config.tune.beta_min > 0 and config.tune.beta_max >= config.tune.beta_min,
         "tune.beta_min must be > 0 and <= tune.beta_max"),
        (0 <= config.tune.epsilon_min <= config.tune.epsilon_max < 1, "tune epsilon range must lie in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def dump_yaml(config: Config, path: str | Path, header: str = "") -> None:
    """Write a config that :func:`load_config` reads back unchanged."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    Path(path).write_text((header + "\n" if header else "") + text)
