"""What every command needs, loaded lazily: settings, the store, ``now`` and the actor."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import click
from dateutil import parser as date_parser

from mailhygiene.config.rules import load_rules
from mailhygiene.config.secrets import resolve_password
from mailhygiene.config.settings import Settings, find_settings_path, load_settings
from mailhygiene.errors import InputError
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.policy import Policy
from mailhygiene.store.session import Store, open_store

ACTOR_ENV = "MAILHYGIENE_ACTOR"


@dataclass
class AppContext:
    config_option: str | None
    _settings: Settings | None = None
    _store: Store | None = None
    _policy: Policy | None = None
    closers: list[Store] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(find_settings_path(self.config_option))
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings.database_url)
            self.closers.append(self._store)
        return self._store

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = load_rules(self.settings.rules_path)
        return self._policy

    def server(self, account_name: str | None) -> ImapMailServer:
        """An unconnected server for the account; use it as a context manager."""
        account = self.settings.account(account_name)
        return ImapMailServer(account, resolve_password(account))

    def close(self) -> None:
        for store in self.closers:
            store.close()


def app(ctx: click.Context) -> AppContext:
    obj = ctx.find_object(AppContext)
    if obj is None:
        raise RuntimeError("mailhygiene CLI context missing")
    return obj


def parse_now(value: str | None) -> datetime:
    """``--now``: the instant a command acts at (simulation and tests); default: the clock."""
    if not value:
        return datetime.now(UTC)
    try:
        parsed = date_parser.isoparse(value)
    except ValueError:
        raise InputError(
            f"--now {value!r} is not a date; use ISO 8601 like 2026-03-01 or 2026-03-01T12:00+01:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def current_actor() -> str:
    """The acting user: ``$MAILHYGIENE_ACTOR`` for service accounts, else the OS user."""
    return os.environ.get(ACTOR_ENV) or getpass.getuser()
