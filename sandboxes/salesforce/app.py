"""The WSGI app: entry, faults, call log, version list; `serve`."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable

from werkzeug.wrappers import Request, Response

from ..kit import ServerHandle, local_ca, serve_wsgi
from .composite import CompositeHandlers
from .oauth import OAuthHandlers
from .query import QueryHandlers
from .rest import RestHandlers
from .sandbox import CallRecord, SalesforceSandbox, _json


class SandboxApp(OAuthHandlers, RestHandlers, QueryHandlers, CompositeHandlers):
    """The WSGI app, one mixin per API area. ``create_app(sandbox)`` returns one."""

    def __init__(self, sandbox: SalesforceSandbox):
        self.sb = sandbox

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    # ---- entry ------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        sb = self.sb
        path = request.path.rstrip("/") or "/"
        with sb.lock:
            fault = sb._take_fault(("timeout",), path)
        if fault:
            time.sleep(float(fault.options.get("delay", sb.timeout_delay)))
        with sb.lock:
            org_id: str | None = None
            endpoint = f"{request.method} {path}"
            try:
                fault = sb._take_fault(("500", "503"), path)
                if fault and fault.kind == "500":
                    response = _json([{"message": "An unexpected error occurred. Please include "
                                       "this ErrorId if you contact support: 1234567890-12345 "
                                       "(-1234567890)", "errorCode": "UNKNOWN_EXCEPTION"}], 500)
                elif fault:
                    response = _json([{"message": "Server is temporarily unavailable",
                                       "errorCode": "SERVER_UNAVAILABLE"}], 503)
                elif path.startswith("/services/oauth2/"):
                    endpoint = f"{request.method} {path}"
                    response = self.oauth(request, path)
                elif path.startswith("/id/"):
                    endpoint = f"{request.method} /id/{{org}}/{{user}}"
                    response = self.identity(request, path)
                elif path == "/services/data":
                    response = self.versions(request)
                elif path.startswith("/services/data/"):
                    endpoint, org_id, response = self.data(request, path)
                else:
                    response = _json([{"errorCode": "NOT_FOUND",
                                       "message": "The requested resource does not exist"}], 404)
            except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer
                traceback.print_exc()
                response = _json([{"message": f"sandbox error: {exc!r}",
                                   "errorCode": "UNKNOWN_EXCEPTION"}], 500)
            sb.calls.record(org_id, endpoint, CallRecord(
                sb.clock.now(), request.method, request.path, endpoint, response.status_code, org_id))
            return response


def create_app(sandbox: SalesforceSandbox) -> SandboxApp:
    """The WSGI application serving ``sandbox``."""
    return SandboxApp(sandbox)


def serve(sandbox: SalesforceSandbox, host: str = "127.0.0.1", port: int = 0, tls: bool = True,
          *, hostnames: Iterable[str] = (), ca_dir: str | None = None,
          quiet: bool = True) -> ServerHandle:
    """Serve the sandbox on a background thread (HTTP/1.1 keep-alive, threaded).

    TLS (default): a local CA from trustme (kept in ``ca_dir`` if given, so ``make run`` keeps
    one CA across restarts; otherwise a temp dir removed at shutdown).  The leaf certificate
    covers 127.0.0.1, localhost, ``host`` and ``hostnames``.  Trust ``handle.ca_path``.
    """
    ca, ca_path = (local_ca(ca_dir, "salesforce-sandbox", "MutualPlan Salesforce sandbox")
                   if tls else (None, None))
    handle = serve_wsgi(create_app(sandbox), host, port, sandbox=sandbox, ca=ca,
                        ca_path=ca_path, hostnames=hostnames, name="salesforce-sandbox",
                        quiet=quiet)
    if sandbox.base_url is None:
        sandbox.base_url = handle.url
    return handle
