"""Mail as safe text; the ``[web]`` settings and the session secret; ``user passwd``."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailhygiene.audit import log as audit
from mailhygiene.cli.main import cli
from mailhygiene.config.settings import WebSettings, parse_settings
from mailhygiene.conversations import MAX_TEXT, html_to_text, message_text
from mailhygiene.errors import ConfigError, SecretError
from mailhygiene.store.models import User
from mailhygiene.store.session import open_store
from mailhygiene.users import check_password
from mailhygiene.web import session_secret
from tests.web.conftest import NOW

# -- text ------------------------------------------------------------------------------------


def test_plain_text_is_preferred_to_html() -> None:
    raw = (
        b"From: a@x\r\nSubject: Hej\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVanlig text\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML <b>text</b></p>\r\n--b--\r\n"
    )
    shown = message_text(raw)
    assert shown.text == "Vanlig text"
    assert shown.source == "text/plain"
    assert ("Subject", "Hej") in shown.headers


def test_attachments_are_named_not_shown() -> None:
    raw = (
        b"From: a@x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSe bilaga\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="faktura.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )
    shown = message_text(raw)
    assert shown.attachments == ["faktura.pdf"]
    assert "JVBERi0" not in shown.text


def test_html_becomes_text_without_active_content() -> None:
    text = html_to_text(
        "<html><head><title>t</title><style>x{}</style></head><body>"
        "<script>steal()</script><h1>Rubrik</h1><ul><li>ett</li><li>två</li></ul>"
        "<p>A&nbsp;&amp;&nbsp;B</p><a href='javascript:alert(1)'>klick</a>"
        "<a href='https://example.se/x'>länk</a><!-- hidden --><img alt='logo' src='x'>"
        "</body></html>"
    )
    assert "steal" not in text
    assert "javascript" not in text
    assert "hidden" not in text
    assert "Rubrik" in text
    assert "• ett\n" in text
    assert "A & B" in text
    assert "länk [https://example.se/x]" in text
    assert "[logo]" in text


def test_control_and_direction_overrides_are_removed() -> None:
    raw = "From: a@x\r\nSubject: fa\u202ektura\r\n\r\nbetala\u202e till\x1b[31m konto\r\n".encode()
    shown = message_text(raw)
    assert "\u202e" not in shown.text
    assert "\x1b" not in shown.text
    assert ("Subject", "faktura") in shown.headers


def test_broken_mail_is_shown_as_well_as_it_can_be() -> None:
    raw = (
        b"From: a@x\r\nContent-Type: text/plain; charset=no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\xff\r\n"
    )
    shown = message_text(raw)
    assert shown.source == "text/plain"
    huge = b"From: a@x\r\n\r\n" + b"x" * (MAX_TEXT + 10)
    long = message_text(huge)
    assert long.truncated
    assert len(long.text) == MAX_TEXT


# -- settings ------------------------------------------------------------------------------------


def _settings(web: str, tmp_path: Path) -> WebSettings:
    import tomllib

    return parse_settings(tomllib.loads(web), tmp_path / "mailhygiene.toml").web


def test_web_settings_are_read_and_checked(tmp_path: Path) -> None:
    web = _settings(
        '[web]\nlisten = "0.0.0.0"\nport = 8443\ntrusted_proxies = ["127.0.0.1", "10.1.0.0/16"]\n'
        'session_idle_minutes = 30\nsession_max_hours = 8\nsecret_file = "web.secret"\n',
        tmp_path,
    )
    assert web.port == 8443
    assert ipaddress.ip_address("10.1.2.3") in web.trusted_proxies[1]
    assert web.secret_file == tmp_path / "web.secret"
    assert web.secure_cookie
    assert _settings("", tmp_path) == WebSettings()
    for bad, key in (
        ('[web]\ntrusted_proxies = ["proxy.example"]\n', "web.trusted_proxies"),
        ('[web]\nsecret_env = "A"\nsecret_file = "b"\n', "web.secret_env"),
        ("[web]\nsession_idle_minutes = 600\nsession_max_hours = 8\n", "web.session_idle_minutes"),
        ("[web]\nport = 0\n", "web.port"),
        ('[web]\nsecret = "inline"\n', "web.secret"),
    ):
        with pytest.raises(ConfigError) as caught:
            _settings(bad, tmp_path)
        assert caught.value.key == key


def test_the_session_secret_comes_from_env_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, ephemeral = session_secret(WebSettings())
    assert ephemeral
    assert len(secret) >= 32
    monkeypatch.setenv("MH_WEB_SECRET", "s" * 40)
    assert session_secret(WebSettings(secret_env="MH_WEB_SECRET")) == ("s" * 40, False)
    (tmp_path / "secret").write_text("f" * 40 + "\n", encoding="utf-8")
    assert session_secret(WebSettings(secret_file=tmp_path / "secret")) == ("f" * 40, False)
    monkeypatch.setenv("MH_WEB_SECRET", "short")
    with pytest.raises(SecretError, match="too short"):
        session_secret(WebSettings(secret_env="MH_WEB_SECRET"))
    with pytest.raises(SecretError, match="missing"):
        session_secret(WebSettings(secret_env="MH_NOT_SET"))
    with pytest.raises(SecretError, match="cannot be read"):
        session_secret(WebSettings(secret_file=tmp_path / "absent"))


# -- user passwd ---------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mailhygiene.toml"
    path.write_text('[database]\nurl = "sqlite:///mh.db"\n', encoding="utf-8")
    monkeypatch.setenv("MAILHYGIENE_ACTOR", "alice")
    runner = CliRunner()
    assert (
        runner.invoke(
            cli, ["--config", str(path), "user", "add", "alice", "--role", "admin"]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            cli, ["--config", str(path), "user", "add", "bob", "--role", "support"]
        ).exit_code
        == 0
    )
    return path


def test_user_passwd_reads_the_password_from_stdin_and_stores_a_hash(
    config: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["--config", str(config), "user", "passwd", "bob", "--password-file", "-", "--json"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["name"] == "bob"
    assert "a long enough password" not in result.output
    store = open_store(f"sqlite:///{tmp_path / 'mh.db'}")
    try:
        with store.transaction() as session:
            user = session.query(User).filter_by(name="bob").one()
            assert user.password_hash is not None
            assert user.password_hash.startswith("$argon2id$")
            assert "a long enough password" not in user.password_hash
        acting = check_password(
            store, name="bob", password="a long enough password", action="test", now=NOW
        )
        assert acting.name == "bob"
        [entry] = audit.query(store, tag="user:password")
        assert (entry.subject, entry.data) == ("bob", {"first": True})
        assert "argon2" not in str(entry.data)
    finally:
        store.close()


def test_user_passwd_from_a_file_and_its_refusals(config: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    secret = tmp_path / "pw"
    secret.write_text("from a file, long enough\n", encoding="utf-8")
    base = ["--config", str(config), "user", "passwd"]
    assert runner.invoke(cli, [*base, "bob", "--password-file", str(secret)]).exit_code == 0
    short = runner.invoke(cli, [*base, "bob", "--password-file", "-"], input="short\n")
    assert short.exit_code == 1
    assert short.output.strip().splitlines() == [
        "error: the password is too short: use at least 12 characters (a few unrelated words "
        "make a good one)"
    ]
    no_tty = runner.invoke(cli, [*base, "bob"], input="")
    assert no_tty.exit_code == 1
    assert "--password-file -" in no_tty.output
    missing = runner.invoke(cli, [*base, "bob", "--password-file", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert "cannot read --password-file" in missing.output
    unknown = runner.invoke(cli, [*base, "carl", "--password-file", str(secret)])
    assert unknown.exit_code == 1
    assert "no user named 'carl'" in unknown.output


def test_only_an_admin_sets_passwords(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILHYGIENE_ACTOR", "bob")
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "user", "passwd", "bob", "--password-file", "-"],
        input="a long enough password\n",
    )
    assert result.exit_code == 3
    assert "needs the 'admin' role" in result.output
