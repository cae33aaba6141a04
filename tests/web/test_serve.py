"""``mailhygiene serve`` as a user starts it: a real process with waitress on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailhygiene.cli.main import cli

RULES = 'version = 1\n[retention]\ndefault = "180d"\n'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    path = tmp_path / "mailhygiene.toml"
    path.write_text(
        '[database]\nurl = "sqlite:///mh.db"\n'
        f'[web]\nport = {_free_port()}\nsecret_env = "MH_TEST_WEB_SECRET"\nsecure_cookie = false\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("MAILHYGIENE_ACTOR", "alice")
    result = CliRunner().invoke(
        cli, ["--config", str(path), "user", "add", "alice", "--role", "admin"]
    )
    assert result.exit_code == 0, result.output
    return path


def test_serve_without_its_secret_stops_with_one_line(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MH_TEST_WEB_SECRET", raising=False)
    result = CliRunner().invoke(cli, ["--config", str(config), "serve"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: [web] the session secret in environment variable")


def test_serve_runs_the_web_page(config: Path) -> None:
    port = int(config.read_text().split("port = ")[1].split("\n")[0])
    env = {
        **os.environ,
        "MAILHYGIENE_ACTOR": "alice",
        "MH_TEST_WEB_SECRET": "s" * 48,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mailhygiene", "--config", str(config), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as page:
                    body = page.read().decode()
                    headers = page.headers
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        assert "Log in" in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/plans")
        opener = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as redirected:
            opener.open(request, timeout=5)
        redirected.value.close()
        assert redirected.value.code == 302
        assert redirected.value.headers["Location"].startswith("/login?next=/plans")
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=30)
    assert "Serving mailhygiene on http://127.0.0.1:" in err
    assert "s" * 48 not in err


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
