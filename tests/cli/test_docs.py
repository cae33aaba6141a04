"""Docs are tests: the command reference, the README and the shipped files cannot drift."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from mailhygiene.cli.auth import unguarded_commands
from mailhygiene.cli.main import cli
from mailhygiene.config.rules import load_rules
from mailhygiene.config.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from gen_cli_docs import leaf_commands, render  # noqa: E402

LEAVES = list(leaf_commands(cli))


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[p for p, _ in LEAVES])
def test_every_command_has_help_with_an_example(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no help text"
    assert "Example" in command.help, f"{path}'s help has no 'Example:' line"


def test_every_command_declares_a_permission() -> None:
    assert unguarded_commands(cli) == []


def test_cli_reference_is_current() -> None:
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        "docs/cli.md is out of date: run python scripts/gen_cli_docs.py"
    )


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", _readme(), re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci


def test_readme_example_settings_are_valid() -> None:
    block = re.search(r"```toml\n(\[database\].*?)```", _readme(), re.S)
    assert block is not None
    settings = parse_settings(tomllib.loads(block.group(1)), ROOT / "mailhygiene.toml")
    assert settings.accounts["support"].port == 993


def test_readme_commands_exist() -> None:
    known = {path for path, _ in LEAVES}
    groups = {" ".join(path.split()[:2]) for path in known}
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", _readme(), re.S))
    for line in re.findall(r"^mailhygiene [a-z].*$", blocks, re.M):
        words = line.split()
        two, three = " ".join(words[:2]), " ".join(words[:3])
        assert two in known or three in known, f"README mentions unknown command: {line}"
        assert two in known or two in groups


def test_shipped_rules_file_loads() -> None:
    policy = load_rules(ROOT / "rules.toml")
    assert policy.rules


def test_generator_check_mode_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
