"""Job settings from one YAML file, validated by a pydantic type, with URIs overridden from the environment so one
file serves laptops, CI and clusters (training and batch jobs alike)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import pydantic
import yaml
from pydantic import BaseModel

from recsys.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


def load(path: Path, environ: Mapping[str, str], config_type: type[C], overrides: Mapping[str, str]) -> C:
    """Read ``path``, set each field of ``overrides`` (environment variable -> field) that ``environ`` sets, and
    validate; :class:`ConfigError` names the file and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    for variable, field in overrides.items():
        if environ.get(variable):
            raw[field] = environ[variable]
    try:
        return config_type.model_validate(raw)
    except pydantic.ValidationError as err:
        raise ConfigError.from_validation(err, str(path)) from err
