"""The settings file (``mailhygiene.toml``): database, policy file, IMAP accounts, web page.

Passwords are never in this file: each account names where its password comes from
(``password_env``, ``password_file`` or ``password_command``) and ``secrets`` reads it
only when a connection is opened. The web page's session secret likewise comes from an
environment variable or a file named in ``[web]``, never from the file itself.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
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
class WebSettings:
    """``[web]``: how ``mailhygiene serve`` listens and keeps sessions.

    ``trusted_proxies`` are the addresses (or networks) of reverse proxies whose
    ``X-Remote-User`` header names the logged-in user; requests from anywhere else never
    have that header believed. ``secret_env`` / ``secret_file`` say where the session
    signing secret comes from (at most one; with neither, ``serve`` makes an ephemeral
    one and warns). ``secure_cookie = false`` is only for plain HTTP without a proxy.
    """

    listen: str = "127.0.0.1"
    port: int = 8080
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    session_idle_minutes: int = 480
    session_max_hours: int = 12
    secret_env: str | None = None
    secret_file: Path | None = None
    secure_cookie: bool = True


@dataclass(frozen=True)
class RunSettings:
    """``[run]``: how ``mailhygiene run --all-accounts`` shares the IMAP servers.

    ``max_connections_per_server`` bounds the accounts of one server (the same ``host``)
    run at once by all workers of all machines on this database together.
    """

    max_connections_per_server: int = 2


@dataclass(frozen=True)
class Settings:
    """The whole settings file, validated."""

    path: Path
    database_url: str
    rules_path: Path
    accounts: dict[str, AccountSettings]
    run: RunSettings = field(default_factory=RunSettings)
    web: WebSettings = field(default_factory=WebSettings)

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
    top.only("database", "policy", "accounts", "web", "run")
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
    web = _parse_web(top.table("web", required=False), base)
    run = _parse_run(top.table("run", required=False))
    return Settings(
        path=path, database_url=url, rules_path=rules_path, accounts=accounts, web=web, run=run
    )


def _parse_run(table: TomlReader) -> RunSettings:
    table.only("max_connections_per_server")
    return RunSettings(
        max_connections_per_server=table.integer(
            "max_connections_per_server",
            default=RunSettings.max_connections_per_server,
            minimum=1,
            maximum=1000,
        )
    )


def _parse_web(table: TomlReader, base: Path) -> WebSettings:
    table.only(
        "listen",
        "port",
        "trusted_proxies",
        "session_idle_minutes",
        "session_max_hours",
        "secret_env",
        "secret_file",
        "secure_cookie",
    )
    listen = table.string("listen", default="127.0.0.1").strip()
    if not listen:
        raise table.error("listen", "must not be empty; e.g. 127.0.0.1 behind a reverse proxy")
    proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in table.string_list("trusted_proxies", default=[]):
        try:
            proxies.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise table.error(
                "trusted_proxies",
                f"{text!r} is not an IP address or network; list the reverse proxy's "
                'address as it connects to mailhygiene, e.g. ["127.0.0.1"]',
            ) from None
    secret_env = table.string("secret_env", default="").strip()
    secret_file = table.string("secret_file", default="").strip()
    if secret_env and secret_file:
        raise table.error("secret_env", "set secret_env or secret_file, not both")
    idle = table.integer("session_idle_minutes", default=480, minimum=1, maximum=7 * 24 * 60)
    longest = table.integer("session_max_hours", default=12, minimum=1, maximum=30 * 24)
    if idle > longest * 60:
        raise table.error(
            "session_idle_minutes",
            f"is longer than session_max_hours ({longest} h); a session ends at the earlier",
        )
    return WebSettings(
        listen=listen,
        port=table.integer("port", default=8080, minimum=1, maximum=65535),
        trusted_proxies=tuple(proxies),
        session_idle_minutes=idle,
        session_max_hours=longest,
        secret_env=secret_env or None,
        secret_file=(base / secret_file) if secret_file else None,
        secure_cookie=table.boolean("secure_cookie", default=True),
    )


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
