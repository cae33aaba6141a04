"""The one error tree of mailhygiene.

Every error a user can cause or meet is one of these; the CLI maps ``exit_code``
once (``cli/main.py``) and prints ``str(error)`` as a single line. Anything else
that escapes is a bug and is allowed to show a traceback.

    MailhygieneError (1)
    ├── ConfigError (1)            rules.toml / mailhygiene.toml: file, key path, expectation
    ├── SecretError (1)            a password reference that cannot be resolved
    ├── NotFoundError (1)          an unknown case, plan, message, hold, user …
    ├── InputError (1)             a malformed query, date, duration or argument value
    ├── StoreError (1)             the database cannot be reached or is not migrated
    ├── ImapError (1)              an IMAP problem, always with what to do about it
    │   ├── ConnectError           host unreachable, refused, timed out
    │   ├── TlsError               certificate or handshake failure
    │   ├── AuthError              wrong username or password
    │   ├── FolderError            a folder that does not exist or cannot be selected
    │   └── ServerChanged          the server's state no longer matches what we know
    │       └── MoveInDoubt        a move the server answered with a warning
    └── SafetyRefusal (3)          we refuse to move/delete, or the actor lacks a role
        └── PermissionDenied (3)   the acting user lacks the role for this command
"""

from __future__ import annotations


class MailhygieneError(Exception):
    """Base class: a user-facing error with a one-line message and an exit code."""

    exit_code: int = 1


class ConfigError(MailhygieneError):
    """A configuration file is missing, unreadable or invalid."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class SecretError(MailhygieneError):
    """A password could not be read from its environment variable, file or command."""


class NotFoundError(MailhygieneError):
    """Something the user named does not exist."""


class InputError(MailhygieneError):
    """A value given by the user cannot be understood."""


class StoreError(MailhygieneError):
    """The index database cannot be used."""


class ImapError(MailhygieneError):
    """An IMAP operation failed; the message says what to do about it."""


class ConnectError(ImapError):
    """The IMAP server could not be reached."""


class TlsError(ImapError):
    """The TLS handshake or certificate verification failed."""


class AuthError(ImapError):
    """The IMAP server rejected the login."""


class FolderError(ImapError):
    """A folder does not exist or cannot be selected."""


class ServerChanged(ImapError):
    """The server's state no longer matches the index (UIDVALIDITY, message identity)."""


class MoveInDoubt(ServerChanged):
    """The server reported a problem while moving (an untagged ``NO``, ``BAD`` or
    ``BYE``, or a failure after it said it moved): which messages it moved cannot be
    taken on trust. Dovecot does this when another client recreated the selected folder:
    it moves the UIDs' *new* owners, then says ``* NO Internal error``. ``moved`` is what
    its COPYUID codes say it moved (source → destination UID); what it really moved
    must be checked."""

    def __init__(self, message: str, *, moved: dict[int, int]) -> None:
        super().__init__(message)
        self.moved = moved


class SafetyRefusal(MailhygieneError):
    """mailhygiene refuses to act because acting could lose mail it must keep."""

    exit_code = 3


class PermissionDenied(SafetyRefusal):
    """The acting user does not have the role this command needs."""
