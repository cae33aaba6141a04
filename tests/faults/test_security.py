"""Security: TLS verification by default, no password anywhere, a private database, every
command guarded.

* A self-signed certificate on 127.0.0.1 is refused with ``TlsError`` — over implicit
  TLS (a small TLS server here) and over STARTTLS (a Dovecot with ``ssl = yes``) — and
  accepted once its CA is configured (so verification, not a broken setup, refused it).
* A known password (``Sekr3t-P4ss!``) through ``sync``, ``purge plan/approve/execute``,
  ``status`` and ``audit`` with ``--json`` and every logger at DEBUG, plus the failure
  paths (wrong password, unreachable server): the password is in no output, no log
  record, no exception text, and no byte of the SQLite files.
* The SQLite database (and its WAL files) are created owner-only (0600).
* Every leaf command of the CLI declares a permission.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import stat
import subprocess
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cli.auth import unguarded_commands
from mailhygiene.cli.main import cli
from mailhygiene.config.settings import (
    AccountSettings,
    PasswordSource,
    Security,
    parse_settings,
)
from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.errors import TlsError
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.store.session import open_store
from tests.faults.world import NOW, OLD, RECENT, drop_world, new_world, write_cli_setup

PASSWORD = "Sekr3t-P4ss!"
WRONG_PASSWORD = "Wr0ng-P4ss!"


# -- TLS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfSigned:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    """A self-signed certificate for 127.0.0.1 made with the openssl command."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a self-signed certificate with openssl: {exc}")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)  # a throwaway test key; Dovecot's config process reads it
    return SelfSigned(cert, key)


class TlsImapServer:
    """Implicit TLS on 127.0.0.1 with ``cert``; speaks just enough IMAP to log in."""

    def __init__(self, certificate: SelfSigned) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate.cert, certificate.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.handshake_errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self._talk(conn)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
            finally:
                raw.close()

    @staticmethod
    def _talk(conn: ssl.SSLSocket) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test server ready\r\n")
        stream = conn.makefile("rb")
        try:
            for line in stream:
                tag, _, rest = line.decode("ascii", "replace").partition(" ")
                command = rest.split(" ", 1)[0].strip().upper()
                if command == "CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                if command == "LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag.encode() + b" OK done\r\n")
                    return
                conn.sendall(tag.encode() + b" OK done\r\n")
        finally:
            stream.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def tls_server(self_signed: SelfSigned) -> Iterator[TlsImapServer]:
    server = TlsImapServer(self_signed)
    yield server
    server.close()


def _tls_account(
    port: int, security: Security = "tls", ca_file: Path | None = None
) -> AccountSettings:
    return AccountSettings(
        name="support",
        host="127.0.0.1",
        port=port,
        security=security,
        username="u",
        password=PasswordSource(env="UNUSED"),
        timeout=10,
        ca_file=ca_file,
    )


def test_certificate_verification_is_on_by_default_in_the_settings_file(tmp_path: Path) -> None:
    settings = parse_settings(
        {
            "accounts": {
                "support": {"host": "mail.example.com", "username": "u", "password_env": "X"}
            }
        },
        tmp_path / "mailhygiene.toml",
    )
    account = settings.account("support")
    assert account.security == "tls"
    assert account.tls_verify is True
    assert account.ca_file is None
    assert AccountSettings.__dataclass_fields__["tls_verify"].default is True


def test_a_self_signed_certificate_is_refused_over_tls(
    tls_server: TlsImapServer, self_signed: SelfSigned
) -> None:
    with pytest.raises(TlsError) as refused, ImapMailServer(_tls_account(tls_server.port), "pw"):
        pass
    text = str(refused.value)
    assert all(word in text for word in ("certificate", "127.0.0.1", "ca_file")), text
    assert "\n" not in text
    # Control: the same server is accepted when its certificate is the configured CA, so
    # it was the verification that refused it, not a broken test server.
    trusted = _tls_account(tls_server.port, ca_file=self_signed.cert)
    with ImapMailServer(trusted, "pw") as server:
        assert "IMAP4REV1" in server.capabilities


def test_a_self_signed_certificate_is_refused_over_starttls(self_signed: SelfSigned) -> None:
    config = f"ssl = yes\nssl_cert = <{self_signed.cert}\nssl_key = <{self_signed.key}\n"
    with ThrowawayDovecot(extra_config=config) as dovecot:
        account = dovecot.account()
        settings = replace(_tls_account(dovecot.port, "starttls"), username=account.username)
        with pytest.raises(TlsError) as refused, ImapMailServer(settings, account.password):
            pass
        assert "certificate" in str(refused.value)
        trusted = replace(settings, ca_file=self_signed.cert)
        with ImapMailServer(trusted, account.password) as server:
            assert server.list_folders()


# -- secrets -------------------------------------------------------------------------


class _Everything(logging.Handler):
    """Every log record of every logger, formatted, with its exception text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.name} {record.getMessage()}")
        if record.exc_info:
            self.texts.append("".join(traceback.format_exception(*record.exc_info)))


@pytest.fixture
def all_logs() -> Iterator[_Everything]:
    handler = _Everything()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("imapclient", "imapclient.imaplib", "sqlalchemy", "alembic"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)
    for name in ("imapclient", "imapclient.imaplib", "sqlalchemy", "alembic"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.dovecot
def test_the_password_is_nowhere(
    dovecot: ThrowawayDovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    all_logs: _Everything,
) -> None:
    world = new_world(dovecot, f"sqlite:///{tmp_path / 'unused.db'}", password=PASSWORD)
    try:
        for i in range(12):
            world.plant("INBOX", f"p-{i}", OLD if i < 8 else RECENT)
        world.rescan()
        account = dovecot.account(world.account.username)
        setup = write_cli_setup(tmp_path / "cli", account)
        assert setup.env["MH_FAULT_PASSWORD"] == PASSWORD
        outputs: list[str] = []
        runner = CliRunner()

        def run(actor: str, *args: str, password: str = PASSWORD) -> Result:
            monkeypatch.setenv("MAILHYGIENE_ACTOR", actor)
            monkeypatch.setenv("MAILHYGIENE_CONFIG", str(setup.config))
            monkeypatch.setenv("MH_FAULT_PASSWORD", password)
            result = runner.invoke(cli, list(args), prog_name="mailhygiene")
            outputs.append(result.output)
            with contextlib.suppress(ValueError):
                outputs.append(result.stderr)
            if result.exception is not None:
                outputs.append("".join(traceback.format_exception(result.exception)))
            return result

        for name, role in (("admin", "admin"), ("maja", "manager"), ("per", "manager")):
            assert run("admin", "user", "add", name, "--role", role).exit_code == 0
        now = ("--now", NOW.isoformat())
        assert run("maja", "sync", "--json", *now).exit_code == 0
        planned = run("maja", "purge", "plan", "--json", *now)
        assert planned.exit_code == 0, planned.output
        ref = json.loads(planned.stdout)["ref"]
        assert run("per", "purge", "approve", ref, "--json", *now).exit_code == 0
        executed = run("maja", "purge", "execute", ref, "--json", *now)
        assert executed.exit_code == 0, executed.output
        assert json.loads(executed.stdout)["done"] == 8
        for args in (
            ("status", "--json"),
            ("audit", "log", "--json"),
            ("audit", "verify"),
            ("purge", "show", ref, "--json"),
            ("quarantine", "list", "--json"),
        ):
            assert run("admin", *args).exit_code == 0, args
        # failure paths: a wrong password, an unreachable server
        wrong = run("maja", "sync", "--json", password=WRONG_PASSWORD)
        assert wrong.exit_code == 1
        assert "refused" in wrong.output
        closed = socket.create_server(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        write_cli_setup(tmp_path / "cli", account, port=dead_port)
        unreachable = run("maja", "sync", "--json")
        assert unreachable.exit_code == 1
        assert "cannot reach" in unreachable.output

        texts = {"output": "\n".join(outputs), "logs": "\n".join(all_logs.texts)}
        assert any("LOGIN" in t for t in all_logs.texts), "DEBUG logging did not reach us"
        for where, content in texts.items():
            for secret in (PASSWORD, WRONG_PASSWORD):
                assert secret not in content, f"{secret!r} appears in the {where}"
        files = [p for p in (tmp_path / "cli").iterdir() if p.name.startswith("mh.db")]
        assert files
        for path in files:
            data = path.read_bytes()
            for secret in (PASSWORD, WRONG_PASSWORD):
                for form in (secret.encode(), secret.encode("utf-16-le")):
                    assert form not in data, f"{secret!r} is stored in {path.name}"
    finally:
        drop_world(world)


# -- the database file -----------------------------------------------------------------


def test_the_sqlite_database_is_created_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = tmp_path / "new" / "mh.db"
        store = open_store(f"sqlite:///{path}")
        try:
            with store.transaction() as session:  # writes, so the WAL files exist too
                audit.append(
                    session, actor="t", tag=AuditTag.PLAN_CREATE, subject="x", data={}, at=NOW
                )
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in path.parent.iterdir()
                if p.name.startswith("mh.db")
            }
        finally:
            store.close()
    finally:
        os.umask(previous)
    assert modes.get("mh.db") == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


# -- permissions ---------------------------------------------------------------------


def test_every_leaf_command_declares_a_permission() -> None:
    assert unguarded_commands(cli) == []
