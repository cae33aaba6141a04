"""The port the services use to talk to a mail server; ``ImapMailServer`` is the real one.

Tests inject faults through a fake that implements the same Protocol; everything
else runs against a real Dovecot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from mailhygiene.mailbox import FlagUpdate, FolderStatus, IndexedMessage


class MailServer(Protocol):
    capabilities: frozenset[str]
    condstore: bool

    def list_folders(self) -> list[str]: ...

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus: ...

    def search_uids(self, start: int = 1) -> list[int]: ...

    def search_uid_array(self, start: int = 1) -> Sequence[int]:
        """``search_uids`` in compact form (``ImapMailServer``: an ``array``); ascending,
        no duplicates."""
        ...

    def fetch_index(self, uids: Sequence[int]) -> Iterator[list[IndexedMessage]]: ...

    def fetch_flags(
        self,
        uids: Sequence[int] | None = None,
        *,
        changed_since: int | None = None,
        below_uid: int | None = None,
    ) -> list[FlagUpdate]: ...
