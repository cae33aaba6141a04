"""Rendering for every command: a human table on a terminal, or ``--json``.

Commands build plain data (dicts, lists) and hand it here; nothing else prints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from mailhygiene.policy import Reason

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """The shared ``--json`` flag (machine-readable output, no progress, no colour)."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
    )(func)


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Reason):
        return {"kind": value.kind.value, "name": value.name, "detail": value.detail}
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def print_json(data: object) -> None:
    click.echo(json.dumps(data, default=_default, ensure_ascii=False, indent=2))


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def print_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def print_pairs(pairs: Sequence[tuple[str, object]]) -> None:
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {'' if value is None else value}")


def interactive() -> bool:
    """True when progress bars may be drawn (stderr is a terminal)."""
    return sys.stderr.isatty()


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"
