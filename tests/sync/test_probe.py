"""The post-sync probe's accepted gap: the configured one, else by the two sides' dtypes."""

import pytest

from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.sync.probe import FLOAT32_TOLERANCE, HALF_TOLERANCE, probe_tolerance


@pytest.mark.parametrize("generator, trainer, expected", [
    ("float32", "float32", FLOAT32_TOLERANCE), ("bfloat16", "bfloat16", HALF_TOLERANCE),
    ("float32", "bfloat16", HALF_TOLERANCE), ("bfloat16", "float32", HALF_TOLERANCE),
])
def test_null_tolerance_follows_the_dtypes(generator, trainer, expected):
    cfg = load_config(default_config_path(), [f"generator.dtype={generator}",
                                              f"trainer.dtype={trainer}"])
    assert cfg.generator.sync_probe_tolerance is None
    assert probe_tolerance(cfg.generator, cfg.trainer.dtype) == expected


def test_a_configured_tolerance_wins_and_must_be_positive():
    cfg = load_config(default_config_path(), ["generator.sync_probe_tolerance=0.01",
                                              "generator.dtype=bfloat16"])
    assert probe_tolerance(cfg.generator, "bfloat16") == 0.01
    with pytest.raises(ConfigError, match=r"generator\.sync_probe_tolerance"):
        load_config(default_config_path(), ["generator.sync_probe_tolerance=0"])
