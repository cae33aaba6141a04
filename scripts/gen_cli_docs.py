#!/usr/bin/env python3
"""Write docs/cli.md from the click command tree, or check that it is current.

python scripts/gen_cli_docs.py          # rewrite docs/cli.md
python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailhygiene.cli.main import cli  # noqa: E402

TARGET = ROOT / "docs" / "cli.md"


def leaf_commands(
    group: click.Group, prefix: str = "mailhygiene"
) -> Iterator[tuple[str, click.Command]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from leaf_commands(command, path)
        else:
            yield path, command


def render() -> str:
    lines = [
        "# Command reference",
        "",
        "Generated from the code by `scripts/gen_cli_docs.py`; a test fails when it is out",
        "of date. Every command also takes `--help`; global options: `--config PATH`.",
        "",
    ]
    for path, command in leaf_commands(cli):
        ctx = click.Context(command, info_name=path)
        lines += [f"## `{path}`", "", (command.help or "").strip(), ""]
        usage = command.collect_usage_pieces(ctx)
        lines += ["```", f"{path} {' '.join(usage)}".rstrip(), "```", ""]
        options = [p for p in command.params if isinstance(p, click.Option)]
        if options:
            lines += ["| option | meaning |", "| --- | --- |"]
            for option in options:
                names = ", ".join(f"`{n}`" for n in option.opts)
                lines.append(f"| {names} | {(option.help or '').replace('|', '/')} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print("docs/cli.md is out of date: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
