"""What both CRM sandboxes use: the clock, fault injection, the call log and the HTTP(S) server.

- `SandboxClock`: wall time plus an offset that tests move with `advance`; `freeze()` or
  `SandboxClock(start=...)` stops it, so only `advance` moves time.
- `FaultQueue`: a list of queued `Fault`s; a request takes the first one that matches it.
- `CallLog`: every API call, per account (HubSpot portal, Salesforce org), with counts by endpoint.
- `serve_wsgi`: a small threaded HTTP/1.1 server with keep-alive (werkzeug's dev server closes
  every connection, i.e. one TLS handshake per call), optionally TLS; `local_ca` makes (or
  reloads) a trustme CA for it.
"""
from __future__ import annotations

import collections
import http.server
import io
import logging
import os
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("sandboxes")

__all__ = ["CallLog", "Fault", "FaultQueue", "SandboxClock", "ServerHandle", "local_ca",
           "serve_wsgi"]


# ---- clock ---------------------------------------------------------------------------------
class SandboxClock:
    """Wall clock plus an offset that tests move forward with `advance`.

    `freeze()` stops it where it is and `set(when)` stops it at `when` (an aware datetime);
    then only `advance` moves time, which makes expiry and rate-limit tests independent of
    machine speed. `SandboxClock(start=when)` starts frozen at `when`.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._frozen = start
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The sandbox time as an aware UTC datetime."""
        with self._lock:
            base = self._frozen if self._frozen is not None else datetime.now(UTC)
            return base + timedelta(seconds=self._offset)

    def time(self) -> float:
        """The sandbox time in epoch seconds."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def set(self, when: datetime) -> None:
        """Freeze the clock at `when` (aware datetime)."""
        with self._lock:
            self._frozen, self._offset = when, 0.0

    def freeze(self) -> None:
        with self._lock:
            if self._frozen is None:
                self._frozen = datetime.now(UTC)

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen is not None:
                self._offset -= (datetime.now(UTC) - self._frozen).total_seconds()
                self._frozen = None


# ---- faults --------------------------------------------------------------------------------
@dataclass
class Fault:
    """A fault queued for the next `times` requests whose path contains `path_contains` (and,
    when set, whose method is `method`); `options` are the fault kind's own knobs."""

    kind: str
    times: int = 1
    path_contains: str | None = None
    method: str | None = None
    options: dict = field(default_factory=dict)


class FaultQueue(list):
    """The queued faults of one sandbox (a list of `Fault`; `== []` when none is left)."""

    def __init__(self, kinds: Iterable[str]) -> None:
        super().__init__()
        self.kinds = tuple(kinds)
        self._lock = threading.Lock()

    def add(self, kind: str, times: int = 1, path_contains: str | None = None,
            method: str | None = None, **options: Any) -> Fault:
        if kind not in self.kinds:
            raise ValueError(f"unknown fault {kind!r}; one of {self.kinds}")
        fault = Fault(kind, times, path_contains, method.upper() if method else None, options)
        with self._lock:
            self.append(fault)
        return fault

    def take(self, path: str, method: str | None = None,
             kinds: Iterable[str] | None = None) -> Fault | None:
        """The first queued fault matching the request, counted down (and removed when used up)."""
        with self._lock:
            for f in self:
                if ((kinds is None or f.kind in kinds)
                        and (f.path_contains is None or f.path_contains in path)
                        and (f.method is None or f.method == method)):
                    f.times -= 1
                    if f.times <= 0:
                        self.remove(f)
                    return f
        return None


# ---- call log ------------------------------------------------------------------------------
class CallLog:
    """The API calls a sandbox answered, per account: the newest `maxlen` entries (whatever the
    sandbox records: a dict or a record) and unbounded counts by (account, endpoint)."""

    def __init__(self, maxlen: int | None = None) -> None:
        self._entries: collections.deque = collections.deque(maxlen=maxlen)
        self._counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def record(self, account: Any, endpoint: str, entry: Any) -> None:
        with self._lock:
            self._entries.append((account, entry))
            self._counts[(account, endpoint)] += 1

    def entries(self, account: Any = None) -> list:
        """Entries of `account` (all accounts when None), oldest first."""
        with self._lock:
            return [e for a, e in self._entries if account is None or a == account]

    def counts(self, account: Any = None) -> collections.Counter:
        """Counter of endpoints for `account` (all accounts when None)."""
        out: collections.Counter = collections.Counter()
        with self._lock:
            for (a, endpoint), n in self._counts.items():
                if account is None or a == account:
                    out[endpoint] += n
        return out

    def reset(self, account: Any = None) -> None:
        with self._lock:
            if account is None:
                self._entries.clear()
                self._counts.clear()
                return
            kept = [(a, e) for a, e in self._entries if a != account]
            self._entries.clear()
            self._entries.extend(kept)
            for key in [k for k in self._counts if k[0] == account]:
                del self._counts[key]

    def __iter__(self):
        return iter(self.entries())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# ---- server --------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    """Minimal WSGI handler with HTTP/1.1 keep-alive. The connection's socket is in the
    environ as "sandbox.socket" (a "drop" fault shuts it down without answering)."""

    protocol_version = "HTTP/1.1"
    timeout = 60
    app: Any = None
    scheme = "http"
    quiet = True

    def setup(self):
        super().setup()
        try:  # headers and body go out as separate writes: avoid Nagle/delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def log_message(self, fmt, *args):
        if self.quiet:
            log.debug(fmt, *args)
        else:
            super().log_message(fmt, *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _wsgi(self):
        body = self._read_body()
        url = urlsplit(self.path)
        host, port = self.server.server_address[:2]
        environ = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "",
            "PATH_INFO": unquote(url.path, encoding="latin-1"), "QUERY_STRING": url.query,
            "SERVER_NAME": str(host), "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.scheme, "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "sandbox.socket": self.connection,
        }
        for key in set(self.headers.keys()):
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH",
                            "HTTP_TRANSFER_ENCODING"):  # the body is already de-chunked
                environ[name] = ",".join(self.headers.get_all(key))
        started: list = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(k, v)
        if int(code) not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        if self.headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _wsgi


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ServerHandle:
    """A running sandbox server: `.url`, `.host`, `.port`, `.ca_path` (the CA to trust, when the
    kit made one), `.sandbox`, `.shutdown()`; a context manager."""

    def __init__(self, server: _Server, thread: threading.Thread, url: str, host: str,
                 sandbox: Any, ca_path: str | None = None,
                 tmpdir: tempfile.TemporaryDirectory | None = None) -> None:
        self.server, self.thread, self.url, self.host = server, thread, url, host
        self.port = server.server_address[1]
        self.sandbox, self.ca_path = sandbox, ca_path
        self.before_shutdown: list[Callable[[], None]] = []
        self._tmpdir = tmpdir

    def shutdown(self) -> None:
        for hook in self.before_shutdown:
            hook()
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def local_ca(ca_dir: str | None, stem: str, organization: str):
    """A trustme CA and the path of its certificate.

    With `ca_dir` the CA is kept there as `<stem>-ca.pem` / `<stem>-ca.key` and reused on the
    next start (so `make run` keeps one CA across restarts); without it, the path is None.
    """
    import trustme

    if not ca_dir:
        return trustme.CA(organization_name=organization), None
    d = Path(ca_dir)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / f"{stem}-ca.pem", d / f"{stem}-ca.key"
    if cert.exists() and key.exists():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes()), str(cert)
    ca = trustme.CA(organization_name=organization)
    ca.cert_pem.write_to_path(str(cert))
    key.write_bytes(ca.private_key_pem.bytes())
    os.chmod(key, 0o600)
    return ca, str(cert)


def serve_wsgi(app: Callable, host: str = "127.0.0.1", port: int = 0, *, sandbox: Any = None,
               ssl_context: Any = None, ca: Any = None, ca_path: str | None = None,
               hostnames: Iterable[str] = (),
               url_host: str | None = None, name: str = "sandbox",
               quiet: bool = True) -> ServerHandle:
    """Serve a WSGI app on a daemon thread; port 0 picks a free port.

    TLS when `ssl_context` is given (an `ssl.SSLContext` or a (certfile, keyfile) tuple) or `ca`
    is (a trustme CA: a leaf for 127.0.0.1, localhost, `host` and `hostnames` is issued; without
    `ca_path`, where its certificate already is, it is written to a temp dir removed at
    shutdown). The URL
    shows `url_host` when given, else `host` (127.0.0.1 for a wildcard address).
    """
    tmpdir = None
    if ca is not None and ssl_context is None:
        names = ["127.0.0.1", "localhost"]
        names += [h for h in [host, *hostnames] if h and h not in names and h != "0.0.0.0"]
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(ssl_context)
    elif isinstance(ssl_context, tuple):
        certfile, keyfile = ssl_context
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(certfile, keyfile)
    tls = ssl_context is not None
    handler = type(f"{name}-handler", (_Handler,), {
        "app": staticmethod(app), "scheme": "https" if tls else "http", "quiet": quiet})
    server = _Server((host, port), handler)
    if tls:
        # handshake lazily in the handler thread, not in the accept loop
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True,
                                                do_handshake_on_connect=False)
    if ca is not None and ca_path is None:
        tmpdir = tempfile.TemporaryDirectory(prefix=f"{name}-")
        ca_path = os.path.join(tmpdir.name, "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"{name}-{server.server_address[1]}", daemon=True)
    thread.start()
    shown = url_host or ("127.0.0.1" if host in ("0.0.0.0", "") else host)
    url = f"{'https' if tls else 'http'}://{shown}:{server.server_address[1]}"
    return ServerHandle(server, thread, url, host, sandbox, ca_path, tmpdir)


def wait_forever(handle: ServerHandle) -> None:
    """Block until Ctrl-C, then stop the server (the sandboxes' command lines)."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        handle.shutdown()
