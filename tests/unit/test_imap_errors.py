"""How server answers are worded for the user (``imap.client._translated``)."""

from __future__ import annotations

import imaplib

import pytest

from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.errors import ConnectError, ImapError
from mailhygiene.imap.client import _translated

ACCOUNT = AccountSettings(
    name="support",
    host="127.0.0.1",
    port=10143,
    security="none",
    username="u",
    password=PasswordSource(env="UNUSED"),
)


def test_a_selected_folder_deleted_under_the_session_is_a_lost_session() -> None:
    """Dovecot's answer once another client deleted or renamed the selected folder: the
    run stops as on a lost connection (run again: it resumes), not as a refusal."""
    with (
        pytest.raises(ConnectError, match="run the command again"),
        _translated(ACCOUNT, "open folder 'Archive/2024'", folder="Archive/2024"),
    ):
        raise imaplib.IMAP4.error("select failed: Mailbox was deleted under us (0.001 secs).")


def test_any_other_refusal_is_reported_with_the_servers_words() -> None:
    with (
        pytest.raises(ImapError, match="refused to move messages: NO \\[OVERQUOTA\\]"),
        _translated(ACCOUNT, "move messages"),
    ):
        raise imaplib.IMAP4.error("NO [OVERQUOTA] Quota exceeded")
