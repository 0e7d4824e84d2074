"""Errors of the domain package. Callers catch :class:`RecsysError`; each subclass names a kind of failure."""

from __future__ import annotations

import pydantic


class RecsysError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(RecsysError):
    """Trip data is missing, empty or shaped wrong."""


class StoreError(RecsysError):
    """The model store cannot be read or written."""


class StoreUnavailable(StoreError):
    """The store did not answer (NameNode down, network): worth retrying, unlike the other store errors."""


class ArtifactNotFound(StoreError):
    """The model or version asked for does not exist in the store."""


class ArtifactCorrupt(StoreError):
    """A file of an artifact does not match the checksum or size its manifest records."""


class ModelContractError(RecsysError):
    """A SavedModel does not offer the serving signature this project relies on."""


class ConfigError(RecsysError):
    """A configuration file or value is invalid; the message names the file and the field."""

    @classmethod
    def from_validation(cls, err: pydantic.ValidationError, source: str) -> ConfigError:
        """One line per problem: ``<source>: <field.path>: <problem>, got <value>``."""
        problems = []
        for item in err.errors():
            where = ".".join(str(part) for part in item["loc"]) or "(top level)"
            got = f", got {item['input']!r}" if item["type"] != "missing" else ""
            problems.append(f"{source}: {where}: {item['msg']}{got}")
        return cls("; ".join(problems))
