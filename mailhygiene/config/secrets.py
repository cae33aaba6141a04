"""Resolve an account's password from the environment, a file or a command.

The password is read only when a connection opens, is never cached on disk, and
errors say where it was looked for — never what it was.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from mailhygiene.config.settings import AccountSettings
from mailhygiene.errors import SecretError


def resolve_password(account: AccountSettings) -> str:
    source = account.password
    where = f"[accounts.{account.name}]"
    if source.env:
        value = os.environ.get(source.env)
        if not value:
            raise SecretError(
                f"{where}: environment variable {source.env} is not set; export it with the "
                "IMAP password before running mailhygiene"
            )
        return value
    if source.file:
        try:
            value = source.file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(
                f"{where}: cannot read password_file {source.file}: {exc.strerror}"
            ) from None
        if not value:
            raise SecretError(f"{where}: password_file {source.file} is empty")
        return value
    assert source.command is not None
    try:
        completed = subprocess.run(
            shlex.split(source.command), capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise SecretError(f"{where}: password_command could not run: {exc}") from None
    if completed.returncode != 0:
        raise SecretError(
            f"{where}: password_command exited with status {completed.returncode}; "
            "run it by hand to see why"
        )
    value = completed.stdout.rstrip("\r\n")
    if not value:
        raise SecretError(f"{where}: password_command printed nothing")
    return value
