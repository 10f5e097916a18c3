"""Config loading: YAML + dotted overrides, type checks, and every shipped config loads."""

from pathlib import Path

import pytest

from raytrain.config import Config, ConfigError, dump_yaml, from_dict, load_config, replace, to_dict

REPO = Path(__file__).resolve().parents[1]


def test_defaults_match_the_design():
    config = load_config()
    assert (config.model.hidden_dim, config.model.latent_dim, config.model.epsilon) == (600, 200, 0.5)
    assert (config.train.batch_size, config.train.lr, config.train.beta_cap) == (500, 1e-3, 0.2)
    assert config.model.pia.lambda_scale == 1.0  # fixed lambda_A is the default


def test_overrides_are_typed_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  pia:\n    enabled: true\n    lambda_a: 1\ntrain:\n  epochs: 3\n")
    config = load_config(path, ["model.pia.lambda_a=2", "train.lr=0.01", "tune.lambdas=[0, 1.5]", "name=x"])
    assert config.model.pia.enabled is True
    assert config.model.pia.lambda_a == 2.0 and isinstance(config.model.pia.lambda_a, float)
    assert config.train.epochs == 3 and config.train.lr == 0.01
    assert config.tune.lambdas == (0.0, 1.5)
    assert config.name == "x"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.pia.lamda_a=1", "unknown config key"),
        ("train.epochs=three", "expected an integer"),
        ("model.pia.enabled=maybe", "expected true/false"),
        ("model.name=transformer", "model.name must be one of"),
        ("model.epsilon=1.0", "model.epsilon"),
        ("model.pia.lambda_scale=0.5", "lambda_scale"),
        ("train.epochs", "key=value"),
        ("train.epochs.x=1", "train.epochs: expected an integer"),
        ("train.shuffle_buffer=-1", "train.shuffle_buffer must be >= 0"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_round_trip_through_dict_and_yaml(tmp_path):
    config = load_config(None, ["model.pia.enabled=true", "tune.lrs=[0.001]", "data.n_heldout=0.05"])
    assert from_dict(to_dict(config)) == config
    dump_yaml(config, tmp_path / "out.yaml", header="# test")
    assert load_config(tmp_path / "out.yaml") == config
    assert replace(config, ["train.epochs=7"]).train.epochs == 7
    assert isinstance(Config(), Config)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads ``5e-4`` as a string; Tune writes a trial's lr 1e-7 as ``1e-07``."""
    path = tmp_path / "lr.yaml"
    path.write_text("train:\n  lr: 5e-4\n")
    assert load_config(path).train.lr == 5e-4
    config = load_config(None, ["train.lr=1e-07", "tune.lrs=[1e-3, 5e-4]"])
    assert config.train.lr == 1e-7 and config.tune.lrs == (1e-3, 5e-4)
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(None, ["train.lr=fast"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.name
    first_lines = path.read_text().splitlines()[:4]
    assert any("python jobs/" in line for line in first_lines), "configs start with the command that runs them"
