"""Structured configuration: YAML loading and `key=value` overrides onto the schema
(`rlaif_ray.config.schema`), then the checks (`rlaif_ray.config.checks`).

Every key a user can set is declared in the schema with its type and default;
`load_config` merges a YAML file and overrides onto it and validates ranges, so a typo, a
wrong type or an impossible value fails before Ray starts, naming the key.
"""

from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from rlaif_ray.config.checks import validate
from rlaif_ray.config.schema import schema
from rlaif_ray.errors import ConfigError


def _closest_key(cfg: DictConfig, full_key: str) -> str | None:
    """Best guess at the valid key a typo'd `full_key` meant."""
    parent_path, _, leaf = full_key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
    if not isinstance(parent, DictConfig):
        return None
    match = difflib.get_close_matches(leaf, [str(k) for k in parent], n=1, cutoff=0.5)
    if not match:
        return None
    return f"{parent_path}.{match[0]}" if parent_path else match[0]


def _config_error(err: OmegaConfBaseException, cfg: DictConfig, source: str) -> ConfigError:
    """A ConfigError naming the key (and, for a typo, the closest valid key)."""
    key = getattr(err, "full_key", None) or str(getattr(err, "key", "") or "")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        hint = _closest_key(cfg, key)
        suggestion = f"; did you mean '{hint}'?" if hint else ""
        return ConfigError(f"{source}: unknown config key '{key}'{suggestion}")
    if isinstance(err, ValidationError):
        return ConfigError(f"{source}: key '{key}' {err.msg.splitlines()[0]}")
    return ConfigError(f"{source}: {str(err).splitlines()[0]}")


def _merge(base: DictConfig, update: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as err:
        raise _config_error(err, base, source) from None


def _check_list_indices(cfg: DictConfig, key: str) -> None:
    """Refuse an override into a list entry that does not exist, naming the list's length
    (OmegaConf would try to create the entry and fail with an internal message)."""
    node: Any = cfg
    walked: list[str] = []
    for part in re.sub(r"\[(\d+)\]", r".\1", key).split("."):
        if isinstance(node, ListConfig):
            name = ".".join(walked)
            if not part.isdigit() or int(part) >= len(node):
                count = len(node)
                indices = f" (indices 0-{count - 1})" if count else ""
                raise ConfigError(f"command-line override '{key}': list '{name}' has "
                                  f"{count} {'entry' if count == 1 else 'entries'}{indices}; "
                                  f"'{part}' is not one of them")
            node = node[int(part)]
        elif isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            return  # a new or unknown key: OmegaConf names it
        walked.append(part)


def _apply_override(cfg: DictConfig, item: str) -> None:
    """Apply one `key=value` (dotted key, list items as `judges.0.weight` or
    `judges[0].weight`; value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        value = OmegaConf.from_dotlist([f"value={raw}"])["value"]
    except OmegaConfBaseException as err:
        raise ConfigError(f"override '{item}': cannot parse value: {err}") from None
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    _check_list_indices(cfg, key)
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException as err:
        raise _config_error(err, cfg, "command-line override") from None
    except TypeError as err:
        raise ConfigError(f"command-line override '{key}': {err}") from None


def default_config_path() -> Path:
    """The embedded default config shipped in the package (`conf/default.yaml` links to
    it): tiny local models, local Ray."""
    return Path(str(resources.files("rlaif_ray.resources").joinpath("default.yaml")))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Schema <- YAML file <- `key=value` overrides, then `validate`. Returns a typed DictConfig."""
    cfg = schema()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as err:  # yaml errors carry line/column in their text
            raise ConfigError(f"{path}: cannot parse YAML: {err}") from None
        cfg = _merge(cfg, file_cfg, str(path))
    for item in overrides or []:
        _apply_override(cfg, item)
    validate(cfg)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what a run directory records)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
