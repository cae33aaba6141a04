"""Fixtures shared by every test package.

Sections:

* Dovecot — a throwaway IMAP server per test session (``dovecot``, and
  ``dovecot_nocondstore`` that does not advertise CONDSTORE/QRESYNC), plus a fresh,
  empty account on it for every test (``mailbox``, ``mailbox_nocondstore``). Tests that
  use them carry ``@pytest.mark.dovecot``. Without Dovecot (or without root) they are
  skipped, except under CI (env ``CI`` set), where that is a failure.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator

import pytest

from mailhygiene.devtools import ImapAccount, ThrowawayDovecot, dovecot_binary

# ============================================================================ Dovecot

_account_serial = itertools.count(1)


def _require_dovecot() -> None:
    """Skip (locally) or fail (under CI) when a throwaway Dovecot cannot run here."""
    if dovecot_binary("dovecot") is None or dovecot_binary("doveadm") is None:
        problem = "Dovecot is not installed (apt-get install -y dovecot-imapd)"
    elif os.geteuid() != 0:
        problem = "the throwaway Dovecot needs root"
    else:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must provide it", pytrace=False)
    pytest.skip(problem)


def _fresh_account(
    server: ThrowawayDovecot, request: pytest.FixtureRequest
) -> Iterator[ImapAccount]:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-").lower()[:40]
    username = f"t{next(_account_serial):04d}-{slug}@promix.example"
    server.add_user(username)
    yield server.account(username)
    server.remove_user(username)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[ThrowawayDovecot]:
    """A Dovecot on 127.0.0.1 for the whole session, with every default capability."""
    _require_dovecot()
    with ThrowawayDovecot() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_nocondstore() -> Iterator[ThrowawayDovecot]:
    """A Dovecot that advertises neither CONDSTORE nor QRESYNC (like Exchange Online)."""
    _require_dovecot()
    with ThrowawayDovecot(capabilities_off={"CONDSTORE", "QRESYNC"}) as server:
        yield server


@pytest.fixture
def mailbox(dovecot: ThrowawayDovecot, request: pytest.FixtureRequest) -> Iterator[ImapAccount]:
    """A new, empty account on ``dovecot`` for this test only (deleted afterwards)."""
    yield from _fresh_account(dovecot, request)


@pytest.fixture
def mailbox_nocondstore(
    dovecot_nocondstore: ThrowawayDovecot, request: pytest.FixtureRequest
) -> Iterator[ImapAccount]:
    """A new, empty account on ``dovecot_nocondstore`` for this test only."""
    yield from _fresh_account(dovecot_nocondstore, request)
