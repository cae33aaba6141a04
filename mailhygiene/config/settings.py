"""The settings file (``mailhygiene.toml``): database, policy file and IMAP accounts.

Passwords are never in this file: each account names where its password comes from
(``password_env``, ``password_file`` or ``password_command``) and ``secrets`` reads it
only when a connection is opened.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mailhygiene.config.reader import TomlReader
from mailhygiene.errors import ConfigError

Security = Literal["tls", "starttls", "none"]
SETTINGS_ENV = "MAILHYGIENE_CONFIG"
DEFAULT_SETTINGS_NAME = "mailhygiene.toml"


@dataclass(frozen=True)
class PasswordSource:
    """Where an account's password comes from; exactly one field is set."""

    env: str | None = None
    file: Path | None = None
    command: str | None = None

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return f"command {self.command!r}"


@dataclass(frozen=True)
class AccountSettings:
    """How to reach one IMAP account."""

    name: str
    host: str
    port: int
    security: Security
    username: str
    password: PasswordSource
    folders: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    tls_verify: bool = True
    ca_file: Path | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class Settings:
    """The whole settings file, validated."""

    path: Path
    database_url: str
    rules_path: Path
    accounts: dict[str, AccountSettings]

    def account(self, name: str | None) -> AccountSettings:
        """The named account, or the only one when ``name`` is None."""
        if name is None:
            if len(self.accounts) == 1:
                return next(iter(self.accounts.values()))
            names = ", ".join(sorted(self.accounts))
            raise ConfigError(
                f"several accounts are configured ({names}); choose one with --account"
            )
        try:
            return self.accounts[name]
        except KeyError:
            names = ", ".join(sorted(self.accounts)) or "none"
            raise ConfigError(f"no account named {name!r} (configured: {names})") from None


def find_settings_path(explicit: str | None) -> Path:
    """``--config``, else ``$MAILHYGIENE_CONFIG``, else ``./mailhygiene.toml``."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(SETTINGS_ENV)
    if from_env:
        return Path(from_env)
    return Path.cwd() / DEFAULT_SETTINGS_NAME


def load_settings(path: Path) -> Settings:
    """Read and validate the settings file; every problem names the key and what was expected."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "settings file not found; create it (see README, 'Configuration') or pass --config",
            path=str(path),
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    return parse_settings(data, path)


def parse_settings(data: dict[str, Any], path: Path) -> Settings:
    base = path.parent
    top = TomlReader(data, source=str(path))
    top.only("database", "policy", "accounts")
    database = top.table("database", required=False)
    database.only("url")
    url = database.string("url", default=f"sqlite:///{base / 'mailhygiene.db'}")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            url = f"sqlite:///{(base / relative).resolve()}"
    policy = top.table("policy", required=False)
    policy.only("rules")
    rules_path = base / policy.string("rules", default="rules.toml")
    accounts_table = top.table("accounts", required=False)
    accounts: dict[str, AccountSettings] = {}
    for name in accounts_table:
        accounts[name] = _parse_account(name, accounts_table.table(name), base)
    return Settings(path=path, database_url=url, rules_path=rules_path, accounts=accounts)


def _parse_account(name: str, table: TomlReader, base: Path) -> AccountSettings:
    table.only(
        "host",
        "port",
        "security",
        "username",
        "password_env",
        "password_file",
        "password_command",
        "folders",
        "exclude",
        "tls_verify",
        "ca_file",
        "timeout",
    )
    security = table.choice("security", ("tls", "starttls", "none"), default="tls")
    host = table.string("host").strip()
    if not host:
        raise table.error("host", "must not be empty; give the IMAP server's name or address")
    default_port = 993 if security == "tls" else 143
    port = table.integer("port", default=default_port, minimum=1, maximum=65535)
    if security == "none" and not _is_loopback(host):
        raise table.error(
            "security",
            "'none' sends the password in clear text and is allowed only to a loopback "
            "address (127.0.0.1, ::1, localhost); use 'tls' or 'starttls'",
        )
    sources = {
        key: table.string(key, default="")
        for key in ("password_env", "password_file", "password_command")
    }
    given = [key for key, value in sources.items() if value]
    if len(given) != 1:
        raise table.error(
            "password_env",
            "set exactly one of password_env, password_file or password_command "
            f"(found {len(given)}); passwords are never written in this file",
        )
    password_file = sources["password_file"]
    password = PasswordSource(
        env=sources["password_env"] or None,
        file=(base / password_file) if password_file else None,
        command=sources["password_command"] or None,
    )
    ca_file = table.string("ca_file", default="")
    username = table.string("username")
    if not username.strip():
        raise table.error("username", "must not be empty")
    folders = tuple(table.string_list("folders", default=["*"]))
    if not folders:
        raise table.error("folders", 'names no folder; list folders or patterns, e.g. ["*"]')
    return AccountSettings(
        name=name,
        host=host,
        port=port,
        security=security,  # type: ignore[arg-type]
        username=username,
        password=password,
        folders=folders,
        exclude=tuple(table.string_list("exclude", default=[])),
        tls_verify=table.boolean("tls_verify", default=True),
        ca_file=(base / ca_file) if ca_file else None,
        timeout=table.number("timeout", default=60.0, minimum=1.0),
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
