"""Typed, path-aware access to parsed TOML, so every error names file, key and expectation.

``TomlReader`` wraps one table; each accessor validates one key and raises
``ConfigError`` naming e.g. ``accounts.support.port`` and what was expected. ``only``
rejects unknown keys and suggests the closest known one, which catches typos that
would otherwise silently fall back to a default.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from typing import Any

from mailhygiene.errors import ConfigError

_MISSING = object()


def _type_name(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


class TomlReader:
    """One TOML table with its key path; accessors validate and convert."""

    def __init__(self, data: dict[str, Any], *, source: str, path: str = "") -> None:
        self._data = data
        self._source = source
        self._path = path

    def key_path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self._source, key=self.key_path(key))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def has(self, key: str) -> bool:
        return key in self._data

    def only(self, *allowed: str) -> None:
        """Refuse keys that are not in ``allowed``, suggesting the nearest known one."""
        for key in self._data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" — did you mean '{close[0]}'?" if close else ""
                known = ", ".join(allowed)
                raise self.error(key, f"unknown key{hint} (known keys: {known})")

    def _get(self, key: str, default: object) -> object:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, "is required but missing")
            return default
        return value

    def string(self, key: str, *, default: object = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_type_name(value)}")
        return value

    def boolean(self, key: str, *, default: object = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_type_name(value)}")
        return value

    def integer(
        self,
        key: str,
        *,
        default: object = _MISSING,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value}")
        return value

    def number(
        self, key: str, *, default: object = _MISSING, minimum: float | None = None
    ) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_type_name(value)}")
        if not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return float(value)

    def choice(self, key: str, choices: Sequence[str], *, default: object = _MISSING) -> str:
        value = self.string(key, default=default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def string_list(self, key: str, *, default: object = _MISSING) -> list[str]:
        """A string or a list of strings (a single string is a one-item list)."""
        value = self._get(key, default)
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(
                key, f"expected a string or a list of strings, got {_type_name(value)}"
            )
        return list(value)

    def table(self, key: str, *, required: bool = True) -> TomlReader:
        value = self._get(key, _MISSING if required else {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_type_name(value)}")
        return TomlReader(value, source=self._source, path=self.key_path(key))

    def tables(self, key: str) -> list[TomlReader]:
        """An array of tables (``[[key]]``), possibly empty."""
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(
                key, f"expected an array of tables ([[{key}]]), got {_type_name(value)}"
            )
        return [
            TomlReader(item, source=self._source, path=f"{self.key_path(key)}[{index}]")
            for index, item in enumerate(value)
        ]
