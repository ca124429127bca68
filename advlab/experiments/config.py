"""Validated experiment configs (pydantic): unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator


class ConfigError(ValueError):
    """An invalid experiment config; the message names each offending key."""


class ExperimentConfig(BaseModel):
    """Base of every experiment config: frozen, no unknown keys, one master seed.

    Attributes
    ----------
    seed : int, default=0
        The master seed every unit's seeds derive from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    seed: int = 0

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's ``true``/``false`` is refused for a field that is not a boolean (pydantic
        would read ``true`` as 1)."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and "bool" not in str(field.annotation):
            raise ValueError(f"expected {field.annotation}, got a boolean")
        return value

    @field_validator("device", mode="after", check_fields=False)
    @classmethod
    def _known_device(cls, value: str) -> str:
        from advlab.utils.validation import check_device  # (torch only where a config has one)

        return str(check_device(value))


C = TypeVar("C", bound=ExperimentConfig)


def validate_config(config_cls: type[C], raw: dict[str, Any], source: str = "config") -> C:
    """Build ``config_cls`` from ``raw``; errors list every bad key with its problem.

    Parameters
    ----------
    config_cls : type
        The experiment's ExperimentConfig subclass.
    raw : dict
        Keys and values as read from YAML or a profile.
    source : str, default='config'
        Where raw comes from, for the error message.

    Returns
    -------
    ExperimentConfig
        The validated, frozen config; a ConfigError names every bad key.
    """
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
    """Read a YAML config: ``experiment: NAME`` plus that experiment's fields.

    Parameters
    ----------
    path : str or Path
        A YAML file with experiment: NAME and that experiment's keys.

    Returns
    -------
    (str, dict)
        The experiment's name and the remaining keys.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the path of a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if "experiment" not in raw:
        raise ConfigError(f"{path}: missing key 'experiment' (the name of the experiment to run)")
    name = raw.pop("experiment")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: 'experiment' must be the name of an experiment, got {name!r}")
    return name, raw


def apply_overrides(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``raw`` with each ``key=value`` of ``assignments`` applied (the value read as YAML, so
    ``n_clusters=50``, ``datasets=[mnist]`` and ``n_train=null`` mean what they say; a dotted
    key such as ``data.n=100`` sets a key inside a block). The result is validated like any
    config: an unknown key is an error naming it.

    Parameters
    ----------
    raw : dict
        A config as read from YAML or a profile.
    assignments : list of str
        KEY=VALUE strings, the value read as YAML.

    Returns
    -------
    dict
        A copy of raw with the assignments applied.
    """
    out = copy.deepcopy(dict(raw))
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set n_clusters=50")
        if key == "experiment":
            raise ConfigError("--set cannot change the experiment; name another one instead")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        *parents, leaf = key.split(".")  # data.n=100 sets n inside the block data
        block = out
        for depth, part in enumerate(parents):
            block = block.setdefault(part, {})
            if not isinstance(block, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"--set {item!r}: {where} is not a block of keys")
        block[leaf] = value
    return out
