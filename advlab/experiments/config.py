"""Validated experiment configs (pydantic): unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """An invalid experiment config; the message names each offending key."""


class ExperimentConfig(BaseModel):
    """Base of every experiment config: frozen, no unknown keys, one master seed."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    seed: int = 0


C = TypeVar("C", bound=ExperimentConfig)


def validate_config(config_cls: type[C], raw: dict[str, Any], source: str = "config") -> C:
    """Build ``config_cls`` from ``raw``; errors list every bad key with its problem."""
    try:
        return config_cls.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            problem = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {key}: {problem} (got {err.get('input')!r})")
        raise ConfigError(
            f"invalid {source} for {config_cls.__name__}:\n" + "\n".join(lines)
        ) from None


def read_config_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a YAML config: ``experiment: NAME`` plus that experiment's fields."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    name = raw.pop("experiment", None)
    if not isinstance(name, str):
        raise ConfigError(f"{path}: missing key 'experiment' (the name of the experiment to run)")
    return name, raw
