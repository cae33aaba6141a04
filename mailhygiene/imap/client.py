"""The one place that speaks IMAP: connection, login, folders, fast index fetch, writes.

imapclient handles the connection, TLS, login, capabilities and most commands. The
bulk index fetch and UID searches go through the underlying ``imaplib`` connection
(``IMAPClient._imap``) and a regex parser, because imapclient's pure-Python response
lexer is 5–10× slower than the wire (IMAP-FACTS.md). Every failure is translated into
our error tree with what to do about it; unknown errors propagate.

Safety: this module never sends a bare ``EXPUNGE``. Deletion is ``UID STORE +FLAGS
(\\Deleted)`` followed by ``UID EXPUNGE`` of exactly those UIDs (RFC 4315 §2.1), and is
refused outright on a server without UIDPLUS.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from imapclient import IMAPClient
from imapclient import exceptions as imap_exc

from mailhygiene.config.settings import AccountSettings
from mailhygiene.errors import (
    AuthError,
    ConnectError,
    FolderError,
    ImapError,
    InputError,
    MoveInDoubt,
    SafetyRefusal,
    TlsError,
)
from mailhygiene.imap.headers import (
    _FETCH_FLAGS,
    _FETCH_MODSEQ,
    _FETCH_UID,
    INDEX_HEADER_FIELDS,
    parse_identity_fetch,
    parse_index_fetch,
    split_flags,
)
from mailhygiene.imap.wire import (
    chunked_uid_sets,
    iter_uid_set,
    keyword_atom,
    parse_uid_set,
    quote_mailbox,
    sorted_unique_uids,
    uid_array,
)
from mailhygiene.mailbox import FlagUpdate, FolderStatus, IndexedMessage, MessageIdentity

_T = TypeVar("_T")
_ESEARCH_ALL = re.compile(rb"\bALL ([\d:,]+)")
_TOKEN = re.compile(rb"\S+")
_FETCH_HEADERS = "BODY.PEEK[HEADER.FIELDS (" + " ".join(INDEX_HEADER_FIELDS) + ")]"

FETCH_BATCH = 2000
_PER_COMMAND_RESPONSES = (
    "FETCH",
    "EXPUNGE",
    "VANISHED",
    "COPYUID",
    "MODIFIED",
    "ESEARCH",
    "SEARCH",
    "NO",
    "BAD",
)


@contextmanager
def _translated(account: AccountSettings, action: str, folder: str | None = None) -> Iterator[None]:
    """Translate socket, TLS and IMAP errors raised during ``action`` into ours."""
    host = f"[{account.host}]" if ":" in account.host else account.host  # IPv6
    where = f"{host}:{account.port}"
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise TlsError(
            f"TLS certificate of {where} was refused ({exc.verify_message}); fix the server's "
            f"certificate or set ca_file in [accounts.{account.name}]"
        ) from None
    except ssl.SSLError as exc:
        raise TlsError(
            f"TLS handshake with {where} failed ({exc.reason}); check security "
            f"and port in [accounts.{account.name}]"
        ) from None
    except imap_exc.LoginError as exc:
        if isinstance(exc.__context__, imaplib.IMAP4.abort | OSError | EOFError):
            # imapclient wraps a connection lost during LOGIN in LoginError: not a password.
            raise ConnectError(
                f"connection to {where} was lost during login; run the command again"
            ) from None
        raise AuthError(
            f"login as {account.username} on {where} was refused ({_server_text(exc)}); "
            f"check the password in {account.password.describe()}"
        ) from None
    except (socket.gaierror, ConnectionRefusedError) as exc:
        raise ConnectError(
            f"cannot reach {where} ({exc.strerror or exc}); check host and port in "
            f"[accounts.{account.name}]"
        ) from None
    except TimeoutError:
        raise ConnectError(
            f"{where} did not answer within {account.timeout:g} s while trying to {action}; "
            "the server may be down or slow — run the command again later"
        ) from None
    except OSError as exc:
        if action == "connect" and not isinstance(exc, ConnectionError):
            # No route, network down, address not available: nothing was lost yet.
            raise ConnectError(
                f"cannot reach {where} ({exc.strerror or exc}); check host and port in "
                f"[accounts.{account.name}] and the network"
            ) from None
        raise ConnectError(
            f"connection to {where} was lost while trying to {action} ({exc}); "
            "run the command again: it resumes where it stopped"
        ) from None
    except (imaplib.IMAP4.abort, EOFError) as exc:
        raise ConnectError(
            f"connection to {where} was lost while trying to {action} ({exc}); "
            "run the command again: it resumes where it stopped"
        ) from None
    except imaplib.IMAP4.error as exc:
        text = _server_text(exc)
        if folder is not None and re.search(
            r"doesn't exist|does not exist|nonexistent|not found", text, re.IGNORECASE
        ):
            raise FolderError(
                f"folder {folder!r} does not exist on {where}; check the folder name "
                "('mailhygiene status' lists folders)"
            ) from None
        if "deleted under us" in text:
            # why: Dovecot's words when the selected folder was deleted or renamed by
            # another client; this session's view of the mailbox is gone, as if the
            # connection were lost: a new run starts from a fresh SELECT
            raise ConnectError(
                f"{where} lost the selected folder while trying to {action} ({text}); "
                "run the command again: it resumes where it stopped"
            ) from None
        raise ImapError(f"{where} refused to {action}: {text}") from None


_MAX_LINE = 1_000_000  # imaplib's own limit for one response line
_LITERAL = re.compile(rb"\{(\d+)\}\r\n\Z")


def _read_fetch_response(stream: Any, tag: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Read one FETCH command's responses up to its tagged completion; see ``_uid_fetch``.

    Failures are raised as imaplib's own (``abort`` for a lost connection or ``BYE``,
    ``error`` for NO/BAD), so ``_translated`` words them like every other command's.
    """
    readline, read = stream.readline, stream.read
    data: list[bytes | tuple[bytes, bytes]] = []
    append = data.append
    done = tag + b" "
    while True:
        line = _line(readline)
        if line.startswith(done):
            status = line[len(done) :].rstrip(b"\r\n")
            if status.startswith(b"OK"):
                return data
            raise imaplib.IMAP4.error(status.decode("utf-8", "replace"))
        if line.startswith(b"* BYE"):
            raise imaplib.IMAP4.abort(line[2:].strip().decode("utf-8", "replace"))
        number, _, rest = line[2:].partition(b" ")
        is_fetch = line.startswith(b"* ") and rest.startswith(b"FETCH ") and number.isdigit()
        head = number + b" " + rest[6:] if is_fetch else b""
        while True:
            literal = _LITERAL.search(line)
            if literal is None:
                if is_fetch:
                    append(head.rstrip(b"\r\n"))
                break
            size = int(literal.group(1))
            body = read(size)
            if len(body) < size:
                raise imaplib.IMAP4.abort("the connection closed inside a response")
            if is_fetch:
                append((head[:-2], body))
            line = head = _line(readline)


_COPYUID = re.compile(rb"\[COPYUID ([^\]]*)\]")


class _MoveAnswer(NamedTuple):
    codes: list[bytes]  # the ``COPYUID`` codes (``v src dst``)
    warnings: list[str]  # untagged NO/BAD/BYE, a late failure: the outcome is in doubt


def _read_move_answer(stream: Any, tag: bytes) -> _MoveAnswer:
    """Read one move's responses up to its tagged completion, keeping the ``COPYUID``
    codes of its untagged and tagged OK lines and any untagged ``NO``/``BAD``/``BYE``
    warning; the rest (one EXPUNGE per moved message) is dropped unparsed. Failures are
    raised like ``_read_fetch_response``'s, but a failure after COPYUID (the server says
    it moved, then that it failed) is a warning: what was moved must be checked.

    After a ``BYE`` the answer is read on until the connection closes: Dovecot, its
    selected folder recreated by another client, says BYE and then still moves (and
    sends COPYUID), and what it moved must be known."""
    readline, read = stream.readline, stream.read
    answer = _MoveAnswer([], [])
    done = tag + b" "
    while True:
        try:
            line = _line(readline)
        except (imaplib.IMAP4.abort, OSError):
            if any(warning.startswith("BYE") for warning in answer.warnings):
                return answer
            raise
        code = _COPYUID.search(line) if b"COPYUID" in line else None
        if line.startswith(done):
            status = line[len(done) :].rstrip(b"\r\n")
            if code is not None:
                answer.codes.append(code.group(1))
            if not status.startswith(b"OK"):
                if not answer.codes:
                    raise imaplib.IMAP4.error(status.decode("utf-8", "replace"))
                # why: it says it moved, then failed ("NO Mailbox was deleted under us")
                answer.warnings.append(status.decode("utf-8", "replace"))
            return answer
        if code is not None and line.startswith(b"* OK"):
            answer.codes.append(code.group(1))
        elif line.startswith((b"* NO", b"* BAD", b"* BYE")):
            answer.warnings.append(line[2:].strip().decode("utf-8", "replace"))
        while (literal := _LITERAL.search(line)) is not None:  # e.g. an unsolicited FETCH
            size = int(literal.group(1))
            if len(read(size)) < size:
                raise imaplib.IMAP4.abort("the connection closed inside a response")
            line = _line(readline)


def _copyuid_pairs(code: bytes) -> Iterator[tuple[int, int]]:
    """Source → destination UID pairs of one ``COPYUID`` code (``v src dst``)."""
    parts = code.decode("ascii", "replace").split()
    if len(parts) == 3:
        yield from zip(parse_uid_set(parts[1]), parse_uid_set(parts[2]), strict=False)


def _line(readline: Callable[[int], bytes]) -> bytes:
    line = readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        if not line:
            raise imaplib.IMAP4.abort("the server closed the connection")
        raise imaplib.IMAP4.abort(f"a response line longer than {_MAX_LINE} bytes")
    return line


def _server_text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.strip() or type(exc).__name__


class ImapMailServer:
    """A logged-in connection to one account; use as a context manager."""

    def __init__(self, account: AccountSettings, password: str) -> None:
        self.account = account
        self._password = password
        self._client: IMAPClient | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.condstore = False
        self._selected: str | None = None
        # Pipelined commands whose responses nobody has read yet, oldest first (see
        # fetch_index_raw and the pipelined purge commands): drained before any other.
        self._unread: list[tuple[str, bytes]] = []

    # -- connection --------------------------------------------------------------------
    def __enter__(self) -> ImapMailServer:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        account = self.account
        try:
            context = self._ssl_context()
        except OSError as exc:  # ssl.SSLError too: a ca_file that is not a PEM certificate
            raise TlsError(
                f"cannot use ca_file {account.ca_file} of [accounts.{account.name}] "
                f"({exc.strerror or exc}); point it at a readable PEM certificate file"
            ) from None
        with _translated(account, "connect"):
            client = IMAPClient(
                account.host,
                port=account.port,
                ssl=account.security == "tls",
                ssl_context=context,
                timeout=account.timeout,
            )
        try:
            with _translated(account, "log in"):
                if account.security == "starttls":
                    if b"STARTTLS" not in client.capabilities():
                        raise TlsError(
                            f"{account.host}:{account.port} does not offer STARTTLS; set "
                            f"security and port in [accounts.{account.name}] to what the "
                            'server supports (usually security = "tls" with port 993)'
                        )
                    client.starttls(context)
                if f"{account.username}{self._password}".isascii():
                    client.login(account.username, self._password)
                elif b"AUTH=PLAIN" in client.capabilities():
                    # LOGIN carries ASCII only; AUTHENTICATE PLAIN carries UTF-8 (RFC 4616).
                    client.plain_login(account.username, self._password)
                else:
                    raise AuthError(
                        f"the username or password of [accounts.{account.name}] has non-ASCII "
                        f"characters, which {account.host} could only accept with AUTHENTICATE "
                        "PLAIN, and it does not offer that; use an ASCII password"
                    )
                # imapclient sets imaplib's debug level to 5 and logs every protocol line; on
                # a 100k-message fetch that logging costs more than parsing. Our own errors
                # carry the context that matters.
                client._imap.debug = 0
                capabilities = frozenset(
                    cap.decode("ascii", "replace").upper() for cap in client.capabilities()
                )
                if "CONDSTORE" in capabilities:
                    client.enable("CONDSTORE")
        except BaseException:
            # A refused login (or STARTTLS) must not leave the connection open behind it.
            with suppress(OSError):
                client.shutdown()
            raise
        self._client = client
        self.capabilities = capabilities
        self.condstore = "CONDSTORE" in capabilities

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.account.security == "none":
            return None
        context = ssl.create_default_context(
            cafile=str(self.account.ca_file) if self.account.ca_file else None
        )
        if not self.account.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def close(self) -> None:
        client, self._client = self._client, None
        self._unread = []  # LOGOUT reads past them (imaplib keeps untagged data)
        if client is None:
            return
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError, EOFError):
            with suppress(OSError):
                client.shutdown()

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise ImapError("not connected")
        if self._unread:
            self._settle_unread()
        return self._client

    def _settle_unread(self) -> None:
        """Read and drop the responses of pipelined commands nobody read (their reader
        stopped early or failed), so the next command reads its own response. A NO or
        BAD among them is dropped too: whoever sent the command has given up on it."""
        while self._unread:
            action, tag = self._unread[0]
            with suppress(ImapError):
                self._read_tagged(action, tag, _read_fetch_response)

    @property
    def _raw(self) -> imaplib.IMAP4:
        raw: imaplib.IMAP4 = self.client._imap
        return raw

    def require_capability(self, capability: str, *, action: str) -> None:
        """Refuse ``action`` on a server that lacks ``capability`` (never fall back unsafely)."""
        if capability not in self.capabilities:
            raise SafetyRefusal(
                f"{self.account.host} does not support {capability}, which is required to "
                f"{action} safely; mailhygiene will not fall back to a riskier command"
            )

    # -- folders -------------------------------------------------------------------------
    def list_folders(self) -> list[str]:
        with _translated(self.account, "list folders"):
            entries = self.client.list_folders()
        names: list[str] = []
        for flags, _delimiter, name in entries:
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            names.append(name if isinstance(name, str) else name.decode("utf-8", "replace"))
        return names

    def create_folder(self, folder: str) -> None:
        quote_mailbox(folder)
        with _translated(self.account, f"create folder {folder!r}"):
            # Not folder_exists(): it sends the name as a LIST pattern, so "x%" or "x*"
            # would match other folders and the folder would silently not be created.
            if folder not in self.list_folders():
                self.client.create_folder(folder)

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus:
        """SELECT (or EXAMINE) a folder and report UIDVALIDITY, UIDNEXT, EXISTS, HIGHESTMODSEQ."""
        quote_mailbox(folder)
        with _translated(self.account, f"open folder {folder!r}", folder=folder):
            info = self.client.select_folder(folder, readonly=readonly)
        self._selected = folder
        modseq = info.get(b"HIGHESTMODSEQ")
        uidnext = info.get(b"UIDNEXT")
        exists = int(info.get(b"EXISTS", 0))
        if uidnext is None:
            # RFC 3501 requires UIDNEXT, but a few servers omit it; derive it from the last UID.
            uids = self.search_uid_array(1)
            uidnext = (uids[-1] + 1) if uids else 1
        return FolderStatus(
            name=folder,
            uidvalidity=int(info[b"UIDVALIDITY"]),
            uidnext=int(uidnext),
            exists=exists,
            highestmodseq=int(modseq) if modseq is not None and self.condstore else None,
        )

    # -- reading ---------------------------------------------------------------------------
    def _uid_command(self, action: str, *args: str | bytes) -> list[Any]:
        raw = self._raw
        # imaplib keeps unsolicited responses until someone reads them; drop stale ones so
        # what we read after this command (COPYUID, MODIFIED, ESEARCH) belongs to it.
        for key in _PER_COMMAND_RESPONSES:
            raw.untagged_responses.pop(key, None)
        with _translated(self.account, action, folder=self._selected):
            typ, data = raw.uid(*args)  # type: ignore[arg-type]
        if typ != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise ImapError(f"{self.account.host} refused to {action}: {text}")
        return list(data)

    def search_uids(self, start: int = 1) -> list[int]:
        """All UIDs ≥ ``start`` in the selected folder, ascending (ESEARCH when available)."""
        return list(self.search_uid_array(start))

    def search_uid_array(self, start: int = 1) -> array[int]:
        """``search_uids`` as a compact array (8 bytes per UID), ascending, no duplicates.

        The answer is expanded straight into the array, one UID at a time: no list of
        tokens or of ints for the whole folder on the way. A server's answer normally
        ascends already; when it does not, it is sorted and deduplicated here.
        """
        action = "search the folder"
        uids = uid_array()
        # "n:*" always includes the highest UID, even below n (RFC 3501 §6.4.8).
        if "ESEARCH" in self.capabilities:
            self._uid_command(action, "SEARCH", "RETURN", "(ALL)", "UID", f"{start}:*")
            with _translated(self.account, action):
                _typ, data = self._raw._untagged_response("OK", [None], "ESEARCH")
            for line in data:
                if isinstance(line, bytes):
                    match = _ESEARCH_ALL.search(line)
                    if match:
                        listed = iter_uid_set(match.group(1).decode("ascii"))
                        uids.extend(uid for uid in listed if uid >= start)
        else:
            for line in self._uid_command(action, "SEARCH", "UID", f"{start}:*"):
                if line:
                    tokens = (int(token.group()) for token in _TOKEN.finditer(line))
                    uids.extend(uid for uid in tokens if uid >= start)
        return sorted_unique_uids(uids)

    def fetch_index(self, uids: Sequence[int]) -> Iterator[list[IndexedMessage]]:
        """Yield parsed index rows for ``uids`` in batches (memory stays flat)."""
        for _batch, data in self.fetch_index_raw(uids):
            yield parse_index_fetch(data)

    def fetch_index_raw(self, uids: Sequence[int]) -> Iterator[tuple[list[int], list[Any]]]:
        """Yield ``(batch UIDs, imaplib's FETCH data)`` for ``uids``, unparsed, in batches.

        The data are lists of bytes and tuples of bytes (picklable), to be parsed by
        ``raw_index_parser`` — in this process or a worker's. A UID missing from a batch's
        data was expunged since the search; UIDs are never reused.
        """
        items = "(UID FLAGS INTERNALDATE RFC822.SIZE " + ("MODSEQ " if self.condstore else "")
        items += _FETCH_HEADERS + ")"
        action = "fetch message headers"
        batches = chunked_uid_sets(uids, max_uids=FETCH_BATCH)  # lazily: memory stays flat
        current = next(batches, None)
        if current is None:
            return
        # Pipelined (RFC 3501 §5.5): the next batch's FETCH is sent before this one is
        # handed over, so the server prepares it while the caller parses and stores.
        # A response left unread (the caller stopped early) is read and dropped by the
        # next command on this connection (``client``), so it stays in step.
        tag = self._send_fetch(action, current[1], items)
        while current is not None:
            data = self._read_fetch(action, tag)
            following = next(batches, None)
            if following is not None:
                tag = self._send_fetch(action, following[1], items)
                self._unread.append((action, tag))
            yield current[0], data
            current = following

    def _send_fetch(self, action: str, uid_set: str, items: str) -> bytes:
        """Send ``UID FETCH`` and return its tag; ``_read_fetch`` reads the response."""
        raw = self._raw
        for key in _PER_COMMAND_RESPONSES:
            raw.untagged_responses.pop(key, None)
        with _translated(self.account, action, folder=self._selected):
            tag: bytes = raw._new_tag()
            raw.send(b"%s UID FETCH %s %s\r\n" % (tag, uid_set.encode(), items.encode()))
        return tag

    def _read_fetch(self, action: str, tag: bytes) -> list[Any]:
        return self._read_tagged(action, tag, _read_fetch_response)

    def _read_tagged(self, action: str, tag: bytes, reader: Callable[[Any, bytes], _T]) -> _T:
        """Read the response of the pipelined command ``tag`` with ``reader``; the
        commands sent before it must have been read (responses come in order)."""
        if self._unread:
            if self._unread[0][1] != tag and any(t == tag for _a, t in self._unread):
                raise RuntimeError("pipelined responses must be read in the order sent")
            if self._unread[0][1] == tag:
                del self._unread[0]  # read now (or the connection is lost)
        if self._client is None:
            raise ImapError("not connected")
        raw: imaplib.IMAP4 = self._client._imap
        try:
            with _translated(self.account, action, folder=self._selected):
                return reader(raw.file, tag)
        finally:
            raw.tagged_commands.pop(tag, None)

    def _send_uid(self, action: str, command: str, arguments: bytes) -> bytes:
        """Send ``UID <command> <arguments>`` without reading its response; queued as
        unread until ``_read_tagged`` reads it. Commands already unread stay so: this
        one is pipelined behind them."""
        if self._client is None:
            raise ImapError("not connected")
        raw: imaplib.IMAP4 = self._client._imap
        with _translated(self.account, action, folder=self._selected):
            tag: bytes = raw._new_tag()
            raw.send(b"%s UID %s %s\r\n" % (tag, command.encode(), arguments))
        self._unread.append((action, tag))
        return tag

    def _uid_fetch(self, action: str, uid_set: str, items: str) -> list[Any]:
        """``UID FETCH`` with the response read straight off the connection.

        Returns the data exactly as ``imaplib`` would (each literal as a ``(prefix,
        literal)`` tuple followed by the rest of its line, the ``FETCH`` word dropped),
        at a fraction of the cost: imaplib runs several regular expressions and a log
        call per line, which for a 2,000-message batch costs more than the parsing we do
        with the data. Untagged responses other than FETCH are left out (nothing here
        needs them). Errors are translated like every command's.
        """
        return self._read_fetch(action, self._send_fetch(action, uid_set, items))

    @property
    def raw_index_parser(self) -> Callable[[list[Any]], list[IndexedMessage]]:
        """What turns ``fetch_index_raw`` data into messages: a module-level function, so
        it pickles by name to a worker process."""
        return parse_index_fetch

    def fetch_flags(
        self,
        uids: Sequence[int] | None = None,
        *,
        changed_since: int | None = None,
        below_uid: int | None = None,
    ) -> list[FlagUpdate]:
        """Flags of ``uids`` (or of every message below ``below_uid``), optionally CHANGEDSINCE."""
        if uids is not None:
            if not uids:
                return []
            sets = [text for _b, text in chunked_uid_sets(uids, max_uids=50_000)]
        else:
            if below_uid is None or below_uid <= 1:
                return []
            sets = [f"1:{below_uid - 1}"]
        items = "(UID FLAGS MODSEQ)" if self.condstore else "(UID FLAGS)"
        updates: list[FlagUpdate] = []
        for text in sets:
            args: list[str] = ["FETCH", text, items]
            if changed_since is not None:
                if not self.condstore:
                    raise ImapError("CHANGEDSINCE needs CONDSTORE")
                args.append(f"(CHANGEDSINCE {changed_since})")
            for line in self._uid_command("fetch flags", *args):
                meta = line[0] if isinstance(line, tuple) else line
                if not isinstance(meta, bytes):
                    continue
                uid_match, flags_match = _FETCH_UID.search(meta), _FETCH_FLAGS.search(meta)
                if uid_match is None or flags_match is None:
                    continue
                modseq_match = _FETCH_MODSEQ.search(meta)
                updates.append(
                    FlagUpdate(
                        uid=int(uid_match.group(1)),
                        flags=split_flags(flags_match.group(1)),
                        modseq=int(modseq_match.group(1)) if modseq_match else None,
                    )
                )
        if uids is not None:
            wanted = set(uids)
            updates = [u for u in updates if u.uid in wanted]
        elif below_uid is not None:
            updates = [u for u in updates if u.uid < below_uid]
        return updates

    # -- identity checks and writes ------------------------------------------------------
    def fetch_identity(self, uids: Sequence[int]) -> dict[int, MessageIdentity]:
        """Message-ID, size, flags and MODSEQ of ``uids`` as the server has them *now*."""
        items = "(UID FLAGS RFC822.SIZE " + ("MODSEQ " if self.condstore else "")
        items += "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
        found: dict[int, MessageIdentity] = {}
        for _batch, text in chunked_uid_sets(uids, max_uids=FETCH_BATCH):
            data = self._uid_fetch("check message identity", text, items)
            for identity in parse_identity_fetch(data):
                found[identity.uid] = identity
        return found

    def send_move(self, uids: Sequence[int], destination: str) -> Callable[[], dict[int, int]]:
        """``move``, pipelined where the server has MOVE: ``UID MOVE`` is sent now, and
        the function returned reads its outcome (source → destination UIDs from COPYUID)
        after every command sent before it has been read. Without MOVE the whole
        fallback runs now and the function returns its outcome."""
        if "MOVE" not in self.capabilities:
            try:
                mapping = self.move(uids, destination)
            except MoveInDoubt as doubt:
                in_doubt = doubt  # raised where a pipelined move's answer would be read

                def doubtful() -> dict[int, int]:
                    raise in_doubt

                return doubtful
            return lambda: mapping
        action = f"move messages to {destination!r}"
        target = quote_mailbox(destination)
        tags = [
            self._send_uid(action, "MOVE", text.encode() + b" " + target)
            for _batch, text in chunked_uid_sets(uids, max_uids=5000)
        ]

        def read() -> dict[int, int]:
            mapping: dict[int, int] = {}
            warnings: list[str] = []
            for tag in tags:
                answer = self._read_tagged(action, tag, _read_move_answer)
                for code in answer.codes:
                    mapping.update(_copyuid_pairs(code))
                warnings += answer.warnings
                if any(warning.startswith("BYE") for warning in answer.warnings):
                    break  # the connection is closing: what was moved is known so far
            self._check_move(destination, mapping, warnings)
            return mapping

        return read

    def open_reader(self, folder: str, uidvalidity: int) -> ImapMailServer | None:
        """A second connection to the same account with ``folder`` opened read-only
        (EXAMINE), to read identities while this connection waits for a pipelined
        command's answer; the caller closes it. None when it cannot be opened (a server
        that limits connections, a login or network failure) or when the folder it opened
        has another UIDVALIDITY than ``uidvalidity``: the caller reads on this one then.

        It only ever sends ``UID FETCH`` of identities, whose reader drops the untagged
        EXPUNGEs the other connection's moves cause here, so nothing piles up.
        """
        reader = ImapMailServer(self.account, self._password)
        try:
            reader.connect()
            status = reader.select(folder, readonly=True)
        except ImapError:
            reader.close()
            return None
        if status.uidvalidity != uidvalidity:
            # why: identities read under another UIDVALIDITY would name other messages
            reader.close()
            return None
        return reader

    def search_message_id(self, message_id: str) -> list[int]:
        """UIDs in the selected folder whose Message-ID header contains ``message_id``.

        An id SEARCH cannot carry as a quoted ASCII string yields ``[]``; callers then
        fall back to reading identities (``fetch_identity``).
        """
        if (
            not message_id
            or not message_id.isascii()
            or any(ch in message_id for ch in '\r\n\x00"\\')
        ):
            return []
        data = self._uid_command(
            "search by Message-ID", "SEARCH", "HEADER", "Message-ID", f'"<{message_id}>"'
        )
        return sorted(int(tok) for line in data if line for tok in line.split())

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> set[int]:
        """``UID STORE +FLAGS.SILENT``; with ``unchanged_since`` (CONDSTORE) returns the UIDs
        the server refused because they changed since that MODSEQ (RFC 7162 §3.1.3)."""
        return self._store_flags("+FLAGS.SILENT", uids, flags, unchanged_since)

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._store_flags("-FLAGS.SILENT", uids, flags, None)

    def _store_flags(
        self, mode: str, uids: Sequence[int], flags: Sequence[str], unchanged_since: int | None
    ) -> set[int]:
        atoms = " ".join(
            flag if flag.startswith("\\") and flag[1:].isalpha() else keyword_atom(flag).decode()
            for flag in flags
        )
        modified: set[int] = set()
        for _batch, text in chunked_uid_sets(uids, max_uids=5000):
            args = ["STORE", text]
            if unchanged_since is not None:
                args.append(f"(UNCHANGEDSINCE {unchanged_since})")
            args += [mode, f"({atoms})"]
            self._uid_command("change flags", *args)
            with _translated(self.account, "change flags"):
                for code in self._raw.untagged_responses.pop("MODIFIED", []):
                    if isinstance(code, bytes):
                        modified.update(parse_uid_set(code.decode("ascii").strip("[] ")))
        return modified

    def move(self, uids: Sequence[int], destination: str) -> dict[int, int]:
        """Move with ``UID MOVE`` (RFC 6851); falls back to COPY + ``\\Deleted`` + ``UID EXPUNGE``
        of exactly those UIDs, which needs UIDPLUS. Returns source → destination UIDs when
        the server reports COPYUID (RFC 4315 §3)."""
        target = quote_mailbox(destination)
        mapping: dict[int, int] = {}
        if "MOVE" not in self.capabilities:
            self.require_capability("UIDPLUS", action="move messages without the MOVE extension")
        for batch, text in chunked_uid_sets(uids, max_uids=5000):
            if "MOVE" in self.capabilities:
                self._uid_command(f"move messages to {destination!r}", "MOVE", text, target)
            else:
                self._uid_command(f"copy messages to {destination!r}", "COPY", text, target)
                self._store_flags("+FLAGS.SILENT", batch, ["\\Deleted"], None)
                self._uid_command("expunge the copied messages", "EXPUNGE", text)
            mapping.update(self._copyuid_mapping())
            warnings = [
                text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
                for key in ("NO", "BAD")
                for text in self._raw.untagged_responses.pop(key, [])
            ]
            self._check_move(destination, mapping, warnings)
        return mapping

    def _check_move(self, destination: str, moved: dict[int, int], warnings: list[str]) -> None:
        """Raise ``MoveInDoubt`` when the server warned while moving to ``destination``."""
        if warnings:
            raise MoveInDoubt(
                f"{self.account.host} warned while moving messages from {self._selected!r} to "
                f"{destination!r} ({warnings[0]}); what it moved is checked before going on",
                moved=moved,
            )

    def delete(self, uids: Sequence[int], *, unchanged_since: int | None = None) -> set[int]:
        """Flag ``\\Deleted`` and ``UID EXPUNGE`` exactly ``uids`` (never a bare EXPUNGE).

        Returns the UIDs the server refused to flag because they changed since
        ``unchanged_since``; those are not expunged."""
        self.require_capability("UIDPLUS", action="delete messages")
        refused: set[int] = set()
        for batch, _text in chunked_uid_sets(uids, max_uids=5000):
            refused |= self._store_flags("+FLAGS.SILENT", batch, ["\\Deleted"], unchanged_since)
            remaining = [uid for uid in batch if uid not in refused]
            if remaining:
                for _b, text in chunked_uid_sets(remaining, max_uids=5000):
                    self._uid_command("expunge exactly the planned messages", "EXPUNGE", text)
        return refused

    def _copyuid_mapping(self) -> dict[int, int]:
        """Source → destination UIDs from the last command's ``[COPYUID v src dst]`` codes."""
        mapping: dict[int, int] = {}
        with _translated(self.account, "read COPYUID"):
            codes = self._raw.untagged_responses.pop("COPYUID", [])
        for code in codes:
            if isinstance(code, bytes):
                mapping.update(_copyuid_pairs(code))
        return mapping

    def append(
        self,
        folder: str,
        message: bytes,
        flags: Sequence[str] = (),
        internal_date: datetime | None = None,
    ) -> None:
        quote_mailbox(folder)
        with _translated(self.account, f"append to {folder!r}", folder=folder):
            self.client.append(folder, message, flags=tuple(flags), msg_time=internal_date)

    def fetch_message(self, uid: int) -> bytes | None:
        """The whole message (``BODY.PEEK[]``: does not mark it read); None when gone."""
        data = self._uid_command("fetch a message", "FETCH", str(uid), "(UID BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple) and _FETCH_UID.search(item[0]):
                literal: bytes = item[1]
                return literal
        return None

    def search_text(self, text: str) -> list[int]:
        """UIDs in the selected folder whose header or body contains ``text`` (``SEARCH
        TEXT``, case-insensitive on the server, RFC 3501 §6.4.4), in UTF-8.

        Printable ASCII goes as a quoted string with ``"`` and ``\\`` escaped; anything
        else as a literal (``{n}`` then the UTF-8 bytes), which can carry no command.
        CR, LF and NUL are refused: they could end the command line.
        """
        if not text or any(ch in text for ch in "\r\n\x00"):
            raise InputError(
                f"search text {text!r} is empty or has a line break or NUL; refusing to send it"
            )
        action = "search message text"
        if text.isascii() and text.isprintable():
            quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            data = self._uid_command(action, "SEARCH", "CHARSET", "UTF-8", "TEXT", quoted)
        else:
            # imaplib sends ``literal`` as the command's last argument, after the other args
            self._raw.literal = text.encode("utf-8")  # type: ignore[assignment]
            try:
                data = self._uid_command(action, "SEARCH", "CHARSET", "UTF-8", "TEXT")
            finally:
                self._raw.literal = None
        return sorted({int(tok) for line in data if line for tok in line.split()})


# The names the FETCH parsing had here before it moved to ``headers`` (worker processes
# parse without importing the connection code).
_parse_index_fetch = parse_index_fetch
_split_flags = split_flags


__all__ = ["ImapMailServer", "keyword_atom", "quote_mailbox"]
