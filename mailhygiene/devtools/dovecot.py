"""A throwaway Dovecot IMAP server on 127.0.0.1 for tests, demos and benchmarks.

Runs only as root (Dovecot drops to the ``dovecot`` user for mail access). Every
instance lives in its own directory — config, ``base_dir``, ``state_dir``, logs,
passwd file and Maildir++ mail — and listens on its own free loopback port, so
several can run side by side.

Capabilities can be switched off with ``capabilities_off``. Dovecot 2.3 has no
``-CAP`` syntax for ``imap_capability``: the setting either replaces the whole list
or (with a leading ``+``) appends to it. So the instance writes the complete default
list minus the switched-off names. This changes what the server *advertises* (in the
greeting, after LOGIN and in CAPABILITY); Dovecot still accepts the commands if a
client sends them regardless, so it tests capability-driven fallbacks, not servers
that reject the commands.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEFAULT_PASSWORD_BYTES",
    "DEFAULT_USER",
    "ImapAccount",
    "ThrowawayDovecot",
    "default_capabilities",
    "dovecot_binary",
    "folder_dirname",
    "imap_utf7_encode",
]

DEFAULT_USER = "support@promix.example"
DEFAULT_PASSWORD_BYTES = 12

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_LIBEXEC_DIRS = ("/usr/lib/dovecot", "/usr/libexec/dovecot", "/usr/local/libexec/dovecot")

# Dovecot 2.3.19's compiled-in CAPABILITY_STRING, used when the imap binary cannot be read.
_FALLBACK_CAPABILITY_STRING = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE"
)
# Added at run time by Dovecot to the default list with this instance's settings
# (mailbox_list_index = yes, special-use mailboxes configured).
_DYNAMIC_CAPABILITIES = ("LITERAL+", "NOTIFY", "SPECIAL-USE")
# Switching off the first also switches off the second (QRESYNC requires CONDSTORE).
_IMPLIED_OFF = {"CONDSTORE": ("QRESYNC",)}

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 30
_MAX_UNIX_PATH = 80  # sockets live in base_dir; AF_UNIX paths are limited to 107 bytes
_USERNAME_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,200}$")


@dataclass(frozen=True)
class ImapAccount:
    """Where and as whom to log in."""

    host: str
    port: int
    username: str
    password: str


def dovecot_binary(name: str = "dovecot") -> str | None:
    """The path of a Dovecot executable (``dovecot``, ``doveadm``), or None if not installed."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    return shutil.which(name, path=search)


@functools.cache
def default_capabilities() -> tuple[str, ...]:
    """The capabilities a default instance advertises after LOGIN, in Dovecot's order."""
    base = _FALLBACK_CAPABILITY_STRING
    for libexec in _LIBEXEC_DIRS:
        imap = Path(libexec) / "imap"
        if imap.is_file():
            match = re.search(rb"IMAP4rev1 SASL-IR [ -~]*", imap.read_bytes())
            if match:
                base = match.group(0).decode("ascii")
            break
    names = base.split()
    names.extend(cap for cap in _DYNAMIC_CAPABILITIES if cap not in names)
    return tuple(names)


def imap_utf7_encode(name: str) -> str:
    """Encode a folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3), as Dovecot stores it."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = _b64(raw).rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def folder_dirname(folder: str, separator: str = "/") -> str:
    """The Maildir++ directory name of an IMAP folder: ``Archive/2024`` → ``.Archive.2024``.

    ``INBOX`` (any case) is the Maildir root and has the empty name.
    """
    if folder.upper() == "INBOX":
        return ""
    parts = folder.split(separator)
    for part in parts:
        if not part or "." in part or "/" in part or part in {"cur", "new", "tmp"}:
            raise ValueError(f"folder name {folder!r} cannot be stored in Maildir++")
    return "." + ".".join(imap_utf7_encode(part) for part in parts)


class ThrowawayDovecot:
    """A private Dovecot instance; use as a context manager or call start()/stop().

    ``users`` maps username → password; by default one user, ``support@promix.example``,
    with a random password (``password``). Every user has its own passwd-file, so a user
    added while Dovecot runs (``add_user``) can log in at once; Dovecot checks a file it
    has already read at most once a second, so a changed or removed password may still
    work for about a second.

    ``stop()`` kills the processes; if the Python process itself is killed, the daemon
    stays: stop it with ``doveadm -c <root>/dovecot.conf stop``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        users: Mapping[str, str] | None = None,
        capabilities_off: Iterable[str] = (),
        extra_config: str = "",
        keep: bool = False,
    ) -> None:
        self._given_dir = Path(directory) if directory is not None else None
        self._keep = keep
        self._extra_config = extra_config
        if users is None:
            users = {DEFAULT_USER: secrets.token_urlsafe(DEFAULT_PASSWORD_BYTES)}
        if not users:
            raise ValueError("at least one user is needed")
        for name in users:
            _check_username(name)
        self.users: dict[str, str] = dict(users)
        self.capabilities_off: frozenset[str] = _expand_off(capabilities_off)
        self.host = "127.0.0.1"
        self.port = 0
        self.root = Path()
        self._base_dir = Path()
        self._own_base_dir = False
        self._owns_root = False
        self._running = False
        self._uid, self._gid = _dovecot_ids()

    # ----------------------------------------------------------------- public facts

    @property
    def username(self) -> str:
        """The first user (the default user unless ``users`` was given)."""
        return next(iter(self.users))

    @property
    def password(self) -> str:
        """The password of ``username``."""
        return self.users[self.username]

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def running(self) -> bool:
        return self._running

    def account(self, user: str | None = None) -> ImapAccount:
        """Connection details for ``user`` (default: ``username``)."""
        name = self.username if user is None else user
        return ImapAccount(self.host, self.port, name, self.users[name])

    def advertised_capabilities(self) -> tuple[str, ...]:
        """What this instance is configured to advertise after LOGIN."""
        return tuple(c for c in default_capabilities() if c.upper() not in self.capabilities_off)

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> ThrowawayDovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start Dovecot and wait until it greets; RuntimeError on failure."""
        if self._running:
            raise RuntimeError("this Dovecot instance is already running")
        if os.geteuid() != 0:
            raise RuntimeError("ThrowawayDovecot must run as root (Dovecot drops to 'dovecot')")
        dovecot = dovecot_binary("dovecot")
        if dovecot is None:
            raise RuntimeError("dovecot is not installed: apt-get install -y dovecot-imapd")
        self._prepare_dirs()
        try:
            self._start_with_free_port(dovecot)
        except BaseException:
            self._kill_leftovers()
            self._cleanup_dirs()
            raise
        self._running = True
        atexit.register(self.stop)

    def stop(self, *, graceful: bool = False) -> None:
        """Stop Dovecot and remove its directory (unless ``keep`` or a given directory).

        By default the master and its children are killed at once: Dovecot's own shutdown
        (``graceful=True``: ``doveadm -c CONF stop``) takes 1–3 s, and the mail of a
        throwaway instance is never needed afterwards. Leftovers are killed by pid file.
        """
        if not self._running:
            return
        atexit.unregister(self.stop)
        self._running = False
        master = self._master_pid()
        # Processes Dovecot leaves behind are no longer the master's children afterwards
        # (e.g. an imap process whose client stays connected survives `doveadm stop`).
        started = _process_ids(master) if master is not None else {}
        doveadm = dovecot_binary("doveadm")
        if graceful and doveadm is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [doveadm, "-c", str(self.config_path), "stop"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=_STOP_TIMEOUT_S,
                    check=False,
                )
        self._kill_leftovers(hard=not graceful)
        for pid, start_time in started.items():
            if _start_time(pid) == start_time:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._cleanup_dirs()

    # ----------------------------------------------------------------- users

    def add_user(self, name: str, password: str | None = None) -> str:
        """Add (or re-password) a user while running or not; returns the password."""
        _check_username(name)
        if password is None:
            password = secrets.token_urlsafe(DEFAULT_PASSWORD_BYTES)
        if ":" in password or "\n" in password:
            raise ValueError("a password cannot contain ':' or a newline")
        self.users[name] = password
        if self._running:
            self._write_passwd_file(name)
        return password

    def remove_user(self, name: str) -> None:
        """Forget ``name`` and delete its mail (see the class notes on password caching)."""
        _check_username(name)
        self.users.pop(name, None)
        if self.root != Path():
            (self.root / "passwd.d" / name).unlink(missing_ok=True)
            shutil.rmtree(self.root / "mail" / name, ignore_errors=True)

    # ----------------------------------------------------------------- mail on disk

    def maildir_for(self, user: str) -> Path:
        """The Maildir root (INBOX) of ``user``."""
        _check_username(user)
        return self.root / "mail" / user / "Maildir"

    def folder_dir(self, user: str, folder: str) -> Path:
        """The Maildir++ directory of ``folder`` (INBOX → the root, ``A/B`` → ``.A.B``)."""
        return self.maildir_for(user) / folder_dirname(folder)

    def create_folder(self, user: str, name: str) -> Path:
        """Create ``name`` (and its parents) on disk, owned by dovecot; returns its directory."""
        self._ensure_maildir(self.maildir_for(user), is_folder=False)
        if name.upper() == "INBOX":
            return self.maildir_for(user)
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            path = self.folder_dir(user, "/".join(parts[:depth]))
            self._ensure_maildir(path, is_folder=True)
        self._drop_list_index(user)
        return self.folder_dir(user, name)

    def rescan(self, user: str) -> None:
        """Delete Dovecot's index files of ``user`` so it rescans after direct writes."""
        root = self.maildir_for(user)
        if not root.is_dir():
            return
        dirs = [root, *(p for p in root.iterdir() if p.name.startswith(".") and p.is_dir())]
        for directory in dirs:
            for index in directory.glob("dovecot.index*"):
                index.unlink(missing_ok=True)
        self._drop_list_index(user)

    def chown(self, path: str | os.PathLike[str]) -> None:
        """Give ``path`` and everything below it to the dovecot user."""
        top = Path(path)
        os.chown(top, self._uid, self._gid)
        if top.is_dir():
            for dirpath, dirnames, filenames in os.walk(top):
                for entry in (*dirnames, *filenames):
                    os.lchown(os.path.join(dirpath, entry), self._uid, self._gid)

    @property
    def mail_uid(self) -> int:
        return self._uid

    @property
    def mail_gid(self) -> int:
        return self._gid

    # ----------------------------------------------------------------- internals

    def _prepare_dirs(self) -> None:
        if self._given_dir is None:
            self.root = Path(tempfile.mkdtemp(prefix="mailhygiene-dovecot-"))
            self._owns_root = True
        else:
            self.root = self._given_dir.resolve()
            self._owns_root = not self.root.exists()
            self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # noqa: S103 -- Dovecot processes (not root) must traverse it
        run = self.root / "run"
        if len(str(run)) > _MAX_UNIX_PATH:
            self._base_dir = Path(tempfile.mkdtemp(prefix="dovecot-run-"))
            self._own_base_dir = True
        else:
            self._base_dir = run
            self._own_base_dir = False
            run.mkdir(exist_ok=True)
        os.chmod(self._base_dir, 0o755)  # noqa: S103 -- holds sockets the login processes use
        (self.root / "state").mkdir(exist_ok=True)
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        os.chown(mail, self._uid, self._gid)
        for user in self.users:
            self._write_passwd_file(user)

    def _write_passwd_file(self, user: str) -> None:
        # One file per user (see the class notes): a file Dovecot has not seen is read at once.
        directory = self.root / "passwd.d"
        if not directory.is_dir():
            directory.mkdir(mode=0o750)
            os.chown(directory, 0, self._gid)
        tmp = directory / f".{user}.tmp"
        tmp.write_text(f"{user}:{{PLAIN}}{self.users[user]}\n", encoding="utf-8")
        os.chown(tmp, 0, self._gid)
        os.chmod(tmp, 0o640)
        os.replace(tmp, directory / user)

    def _start_with_free_port(self, dovecot: str) -> None:
        last_error = ""
        for _attempt in range(3):
            self.port = _free_port()
            self.config_path.write_text(self._config_text(), encoding="utf-8")
            startup_log = self.root / "startup.log"
            with startup_log.open("ab") as out:
                code = subprocess.run(
                    [dovecot, "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    timeout=_START_TIMEOUT_S,
                    check=False,
                ).returncode
            if code == 0 and self._wait_for_greeting():
                return
            last_error = self._log_tail()
            self._kill_leftovers()
            if "Address already in use" not in last_error:
                break
        raise RuntimeError(f"Dovecot did not start on {self.host}:{self.port}:\n{last_error}")

    def _wait_for_greeting(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT_S
        pid_file = self._base_dir / "master.pid"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
                    greeting = sock.recv(4096)
                if greeting.startswith(b"* OK"):
                    return True
            except OSError:
                pass
            if pid_file.exists() and self._master_pid() is None:
                return False  # the master died after daemonizing
            time.sleep(0.005)
        return False

    def _master_pid(self) -> int | None:
        try:
            pid = int((self._base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _kill_leftovers(self, *, hard: bool = True) -> None:
        pid = self._master_pid()
        if pid is None:
            return
        if hard:
            for child in _children_of(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        steps = ((signal.SIGKILL, 2.0),) if hard else ((signal.SIGTERM, _STOP_TIMEOUT_S),)
        for sig, wait in (*steps, (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _alive(pid):
                    return
                time.sleep(0.005)

    def _cleanup_dirs(self) -> None:
        if self._own_base_dir:
            shutil.rmtree(self._base_dir, ignore_errors=True)
        if self._owns_root and not self._keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self) -> str:
        parts = []
        for path in (self.root / "startup.log", self.log_path):
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            tail = "\n".join(lines[-_LOG_TAIL_LINES:])
            if tail:
                parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts) or "(Dovecot wrote no log)"

    def _ensure_maildir(self, path: Path, *, is_folder: bool) -> None:
        home = self.root / "mail" / path.relative_to(self.root / "mail").parts[0]
        for directory in (home, path, path / "cur", path / "new", path / "tmp"):
            if not directory.is_dir():
                directory.mkdir(parents=True, exist_ok=True)
                os.chmod(directory, 0o700)
                os.chown(directory, self._uid, self._gid)
        marker = path / "maildirfolder"
        if is_folder and not marker.exists():
            marker.touch(mode=0o600)
            os.chown(marker, self._uid, self._gid)

    def _drop_list_index(self, user: str) -> None:
        for index in self.maildir_for(user).glob("dovecot.list.index*"):
            index.unlink(missing_ok=True)

    def _config_text(self) -> str:
        root = self.root
        lines = [
            f"base_dir = {self._base_dir}",
            f"state_dir = {root / 'state'}",
            f"log_path = {self.log_path}",
            "protocols = imap",
            "listen = 127.0.0.1",
            "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "auth_verbose = yes",
            "auth_failure_delay = 0",
            f"mail_location = maildir:{root}/mail/%u/Maildir",
            "default_login_user = dovenull",
            "default_internal_user = dovecot",
            "default_internal_group = dovecot",
            "mail_uid = dovecot",
            "mail_gid = dovecot",
            f"first_valid_uid = {self._uid}",
            "mail_fsync = never",
            "mail_max_userip_connections = 100",
            # Indexing a 1M-message maildir on its first SELECT needs more than Dovecot's
            # default 256 MB per process; the benchmark's largest size dropped connections.
            "default_vsz_limit = 2G",
            "userdb {",
            "  driver = static",
            f"  args = uid=dovecot gid=dovecot home={root}/mail/%u",
            "}",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {root}/passwd.d/%u",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
            "  chroot =",
            "}",
            "service anvil {",
            "  chroot =",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",  # no growing delays for an IP after failed logins (tests fail some)
            "  }",
            "}",
            "namespace inbox {",
            "  inbox = yes",
            "  separator = /",
            "  mailbox Sent {",
            "    special_use = \\Sent",
            "  }",
            "  mailbox Drafts {",
            "    special_use = \\Drafts",
            "  }",
            "  mailbox Trash {",
            "    special_use = \\Trash",
            "  }",
            "  mailbox Junk {",
            "    special_use = \\Junk",
            "  }",
            "  mailbox Archive {",
            "    special_use = \\Archive",
            "  }",
            "}",
        ]
        if self.capabilities_off:
            lines.append(f"imap_capability = {' '.join(self.advertised_capabilities())}")
        if self._extra_config:
            lines.append(self._extra_config)
        return "\n".join(lines) + "\n"


def _expand_off(names: Iterable[str]) -> frozenset[str]:
    off = {name.strip().upper() for name in names if name.strip()}
    if "IMAP4REV1" in off:
        raise ValueError("IMAP4rev1 cannot be switched off")
    for name in list(off):
        off.update(_IMPLIED_OFF.get(name, ()))
    known = {cap.upper() for cap in default_capabilities()}
    unknown = off - known
    if unknown:
        raise ValueError(f"unknown capabilities: {', '.join(sorted(unknown))}")
    return frozenset(off)


def _check_username(name: str) -> None:
    if not _USERNAME_RE.match(name) or name.startswith("."):
        raise ValueError(f"unusable username {name!r}: use letters, digits and ._@+-")


def _dovecot_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("dovecot")
    except KeyError:
        return (-1, -1)
    return (entry.pw_uid, entry.pw_gid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers signal 0; treat it as gone
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _stat_fields(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or []."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    return stat.rsplit(") ", 1)[-1].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def _children_of(parent: int) -> list[int]:
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if len(fields) > 1 and fields[1] == str(parent):
                children.append(int(entry.name))
    return children


def _process_ids(master: int) -> dict[int, str]:
    """The master and its children, each with its start time (to survive pid reuse)."""
    found: dict[int, str] = {}
    for pid in (master, *_children_of(master)):
        start_time = _start_time(pid)
        if start_time is not None:
            found[pid] = start_time
    return found
