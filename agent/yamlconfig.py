"""Reading a YAML file into a pydantic model, with every problem listed by field path.

Shared by the agent's and the gateway's configs. Light on purpose (PyYAML and pydantic only):
the gateway imports it on a Raspberry Pi without numpy or any inference library.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from agent.util.validation import validation_problems

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; `problems` lists each issue."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def validate_mapping(
    model: type[M],
    data: object,
    path: Path,
    *,
    error: type[ConfigError] = ConfigError,
    empty_ok: bool = False,
) -> M:
    """Validate already-parsed YAML data against `model`; raise `error` listing every problem."""
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise error(path, ["(top level): expected a mapping of sections"])
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise error(path, validation_problems(err)) from None


def load_yaml_model(
    model: type[M],
    path: Path,
    *,
    error: type[ConfigError] = ConfigError,
    empty_ok: bool = False,
) -> M:
    """Read a YAML file and validate it against `model`; raise `error` listing every problem."""
    data = read_config_file(path, error=error)
    return validate_mapping(model, data, path, error=error, empty_ok=empty_ok)


NOT_THERE = (FileNotFoundError, NotADirectoryError)
"""What reading a file raises when it (or a folder above it) is not there."""


@dataclass(frozen=True)
class FileFormat:
    """How a config file's text is parsed, and the words of its two problems."""

    parse: Callable[[str], object]
    syntax_error: type[Exception]
    unreadable: str
    invalid: str


YAML_FILE = FileFormat(yaml.safe_load, yaml.YAMLError, "cannot read file", "invalid YAML")


def read_config_file(
    path: Path,
    fmt: FileFormat = YAML_FILE,
    *,
    error: type[ConfigError] = ConfigError,
    missing_ok: bool = False,
) -> object:
    """The parsed text of `path`. A file that cannot be read (`<unreadable>: <strerror>`) or
    parsed (`<invalid>: <message>`) raises `error`; with `missing_ok` a file that is not there
    raises its `NOT_THERE` error unchanged."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        if missing_ok and isinstance(err, NOT_THERE):
            raise
        raise error(path, [f"{fmt.unreadable}: {err.strerror}"]) from None
    try:
        return fmt.parse(text)
    except fmt.syntax_error as err:
        raise error(path, [f"{fmt.invalid}: {err}"]) from None


def secret_from_env(variable: str | None, field: str) -> str | None:
    """The value of the environment variable a `*_env` config field names (None if unnamed).

    Raises:
        ValueError: the variable is named but not set (the message names `field`).
    """
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise ValueError(f"environment variable {variable} ({field}) is not set")
    return value
