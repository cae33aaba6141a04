"""A small TCP proxy on 127.0.0.1 that breaks IMAP connections on purpose.

``FaultProxy(upstream)`` forwards every accepted connection to ``upstream`` with two
pump threads. ``arm(Fault(...))`` makes the *next* connection fail once a byte count
is reached in one direction (``down``: server → client, ``up``: client → server):

* ``drop`` — reset both sides at once (RST), as a dead NAT entry or a crashed server;
* ``truncate`` — pass exactly ``after`` bytes, then close (FIN) in the middle of
  whatever was being sent (a response line, a literal);
* ``stall`` — stop forwarding after ``after`` bytes and keep the sockets open, as a
  hung server; the client must give up on its own timeout. The proxy closes a stalled
  connection after ``stall_limit`` seconds so nothing waits forever.

Every connection also records how many bytes went each way (``transcripts``), which
is how a test learns the size of an undisturbed run to aim its faults at. The proxy is
bounded: sockets have timeouts, threads are daemons, and ``close()`` (or leaving the
``with`` block) shuts everything down; an idle proxy stops by itself after
``lifetime`` seconds.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

FaultKind = Literal["drop", "truncate", "stall"]
Direction = Literal["down", "up"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    after: int  # bytes that pass in ``direction`` before the fault strikes
    direction: Direction = "down"


@dataclass
class Transcript:
    """Bytes forwarded on one connection, and whether its fault struck."""

    down: int = 0
    up: int = 0
    fault: Fault | None = None
    struck: bool = False
    graceful: bool = False  # close with FIN (truncate), not RST
    closed: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        stall_limit: float = 10.0,
        lifetime: float = 600.0,
    ) -> None:
        self.upstream = upstream
        self.stall_limit = stall_limit
        self.transcripts: list[Transcript] = []
        self._armed: Fault | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------
    def arm(self, fault: Fault | None) -> None:
        """Make the next connection suffer ``fault`` (None: the next one is clean)."""
        with self._lock:
            self._armed = fault

    def struck(self) -> bool:
        return any(t.struck for t in self.transcripts)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _hard_close(sock)
        self._thread.join(5)
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- pumping ---------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                fault, self._armed = self._armed, None
                transcript = Transcript(fault=fault)
                self.transcripts.append(transcript)
                self._sockets.update((client, server))
            for sock in (client, server):
                sock.settimeout(0.2)
            for source, sink, direction in ((server, client, "down"), (client, server, "up")):
                threading.Thread(
                    target=self._pump,
                    args=(source, sink, direction, transcript, client, server),
                    name=f"fault-proxy-{direction}",
                    daemon=True,
                ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        direction: Direction,
        transcript: Transcript,
        client: socket.socket,
        server: socket.socket,
    ) -> None:
        fault = transcript.fault
        if fault is not None and fault.direction != direction:
            fault = None
        try:
            while not self._stop.is_set() and not transcript.closed.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                sent = transcript.down if direction == "down" else transcript.up
                if fault is not None and sent + len(data) >= fault.after:
                    head = data[: max(0, fault.after - sent)]
                    self._strike(fault, head, sink, transcript, client, server)
                    return
                with contextlib.suppress(OSError):
                    sink.sendall(data)
                if direction == "down":
                    transcript.down += len(data)
                else:
                    transcript.up += len(data)
        finally:
            self._finish(transcript, client, server)

    def _strike(
        self,
        fault: Fault,
        head: bytes,
        sink: socket.socket,
        transcript: Transcript,
        client: socket.socket,
        server: socket.socket,
    ) -> None:
        transcript.struck = True
        if fault.kind == "drop":
            return  # _finish resets both sides
        if head:
            with contextlib.suppress(OSError):
                sink.sendall(head)
        if fault.kind == "truncate":
            transcript.graceful = True
            return
        # stall: hold everything until the client gives up or the limit is reached
        limit = time.monotonic() + self.stall_limit
        while time.monotonic() < limit and not self._stop.is_set():
            if transcript.closed.is_set() or _peer_closed(client):
                break
            time.sleep(0.05)

    def _finish(self, transcript: Transcript, client: socket.socket, server: socket.socket) -> None:
        if transcript.closed.is_set():
            return
        transcript.closed.set()
        if transcript.graceful:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                client.close()
            _hard_close(server)
        else:
            for sock in (client, server):
                _hard_close(sock)
        with self._lock:
            self._sockets.discard(client)
            self._sockets.discard(server)


def _peer_closed(sock: socket.socket) -> bool:
    try:
        data = sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, TimeoutError):
        return False
    except OSError:
        return True
    return data == b""


def _hard_close(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the peer sees a reset, not an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
