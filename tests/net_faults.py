"""Network faults for IMAP tests: a TCP proxy that counts, pauses or cuts, and TLS certificates.

``TcpProxy`` listens on 127.0.0.1 and forwards every connection to an upstream server.
It counts the bytes the server sends (``downstream``) and can

* ``cut_after=N``: close the client's connection once N server bytes were forwarded
  (a dropped connection in the middle of a response);
* ``pause_after=N``: stop forwarding server bytes after N until ``release()`` (the client
  blocks mid-response, so a test can kill it at a known point);
* ``tls=context``: terminate TLS from the client (a TLS front for a plain server).

``self_signed_certificate`` writes a certificate for 127.0.0.1 and its key, with the
``cryptography`` package when installed and ``openssl req`` otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import TracebackType

_CHUNK = 65536


class TcpProxy:
    """A loopback TCP proxy in front of ``upstream``; use as a context manager."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        cut_after: int | None = None,
        pause_after: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.pause_after = pause_after
        self.downstream = 0
        self.connections = 0
        self.cuts = 0
        self._tls = tls
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._paused = threading.Event()
        self._closing = False
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", int(self._listener.getsockname()[1])
        self._spawn(self._accept_loop)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- control ---------------------------------------------------------------------------
    def wait_paused(self, timeout: float) -> bool:
        """True once forwarding stopped at ``pause_after`` (within ``timeout`` seconds)."""
        return self._paused.wait(timeout)

    def release(self) -> None:
        """Forward everything from now on."""
        self._released.set()

    def close(self) -> None:
        self._closing = True
        self._released.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- plumbing --------------------------------------------------------------------------
    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closing:
                sock.close()
                return False
            self._sockets.append(sock)
            return True

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            if not self._track(client):
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        try:
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)
                if not self._track(client):
                    return
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
        except OSError:  # includes ssl.SSLError: the client refused our certificate
            self._hang_up(client)
            return
        if not self._track(upstream):
            return
        self.connections += 1
        self._spawn(self._pump, client, upstream, False)
        self._pump(upstream, client, True)

    def _pump(self, source: socket.socket, target: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if downstream:
                    passed = self._gate(data, target)
                    if passed is None:
                        self._hang_up(source)
                        return
                    data = passed
                target.sendall(data)
        except OSError:
            pass
        self._hang_up(target)

    def _gate(self, data: bytes, target: socket.socket) -> bytes | None:
        """What may pass of ``data`` now (waiting at the pause); None after a cut."""
        before = self.downstream
        self.downstream += len(data)
        if self.cut_after is not None and self.downstream >= self.cut_after:
            target.sendall(data[: max(0, self.cut_after - before)])
            self.cuts += 1
            self._hang_up(target)
            return None
        pause = self.pause_after
        if pause is not None and self.downstream >= pause and not self._released.is_set():
            target.sendall(data[: max(0, pause - before)])
            data = data[max(0, pause - before) :]
            self._paused.set()
            self._released.wait()
        return data

    @staticmethod
    def _hang_up(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` for CN/IP 127.0.0.1, valid for a day; self-signed."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        _with_cryptography(cert_path, key_path)
    except ImportError as missing:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("neither cryptography nor openssl is available") from missing
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(key_path), "-out", str(cert_path),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert_path, key_path


def _with_cryptography(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def tls_server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context
