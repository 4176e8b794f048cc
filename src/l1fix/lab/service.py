"""What the lab's stand-in services share: a loopback HTTP(S) server in a background thread."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from l1fix.lab import tls


class LoopbackService:
    """Binds loopback only; HTTPS with a lab CA when given a certificate folder.

    Subclasses set `label`, build their server in `_new_server`, and keep `_lock`.
    """

    label = "lab service"

    def __init__(self, *, host: str, port: int, tls_cert_dir: Path | None) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the {self.label} binds loopback only, not {host}")
        self.host = host
        self.port = port
        self.tls_cert_dir = Path(tls_cert_dir) if tls_cert_dir is not None else None
        self.ca_path: Path | None = self.tls_cert_dir / tls.CA_NAME if self.tls_cert_dir else None
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._connections: set[socket.socket] = set()

    def _new_server(self, family: socket.AddressFamily) -> ThreadingHTTPServer:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        scheme = "https" if self.tls_cert_dir else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind the loopback port and serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError(f"{self.label} already started")
        if self.tls_cert_dir is not None:
            certs = tls.ensure_certificates(self.tls_cert_dir, ["localhost"], [self.host])
            self.ca_path = certs.ca_path
            self._tls_context = tls.server_context(certs)
        self._server = self._new_server(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.label, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and drop open connections."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        self._server = self._thread = None


class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 handler of a LoopbackService: TLS when the service has it, tracked connections.

    The server must have a `lab` attribute: the LoopbackService it serves.
    """

    protocol_version = "HTTP/1.1"
    sys_version = ""

    def setup(self) -> None:
        # Headers and body leave in two writes: without this, Nagle + delayed ACK cost ~40 ms a request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lab: LoopbackService = self.server.lab  # type: ignore[attr-defined]
        if lab._tls_context is not None:
            self.request.settimeout(10)
            self.request = lab._tls_context.wrap_socket(self.request, server_side=True)
        super().setup()
        with lab._lock:
            lab._connections.add(self.request)

    def finish(self) -> None:
        lab: LoopbackService = self.server.lab  # type: ignore[attr-defined]
        try:
            super().finish()
        finally:
            with lab._lock:
                lab._connections.discard(self.request)
            with contextlib.suppress(OSError):
                self.request.close()  # the TLS wrapper: the server only closes the socket it accepted

    def version_string(self) -> str:
        return self.server_version
