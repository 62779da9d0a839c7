"""The WSGI app: routing, auth, rate limits, fault injection, contract checks; `serve`."""

from __future__ import annotations

import collections
import json
import logging
import socket
import uuid
from collections.abc import Callable

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..kit import ServerHandle, serve_wsgi
from .associations import AssociationHandlers
from .oauth import OAuthHandlers
from .objects import ObjectHandlers
from .sandbox import (
    ApiError,
    HandlerBase,
    HubSpotSandbox,
    Portal,
    _corr,
    _Ctx,
    _expired_error,
    _json_response,
    _template,
    _Token,
)
from .schemas import PipelineHandlers, SchemaHandlers
from .timeline import TimelineHandlers

log = logging.getLogger("sandboxes.hubspot")


# --------------------------------------------------------------------------------------------
# the WSGI app


def _r(path: str, endpoint: str, methods: list[str], auth: str | None = "api") -> Rule:
    return Rule(path, endpoint=(endpoint, auth), methods=methods)


_OBJ = "/crm/v3/objects/<object_type>"
_SCH = ["/crm-object-schemas/v3/schemas", "/crm/v3/schemas"]
_PROP = "/crm/v3/properties/<object_type>"
_A4 = "/crm/v4/associations/<from_type>/<to_type>"
_O4 = "/crm/v4/objects/<object_type>/<object_id>/associations"
_PIPE = "/crm/v3/pipelines/<object_type>"
_TL = "/integrators/timeline/v3"

_RULES = [
    _r("/", "home", ["GET"], None),
    _r("/_sandbox/state", "sandbox_state", ["GET"], None),
    _r("/_sandbox/rep-move", "rep_move", ["POST"], None),
    _r("/oauth/authorize", "authorize_page", ["GET"], None),
    _r("/oauth/<int:portal_hint>/authorize", "authorize_page", ["GET"], None),
    _r("/oauth/authorize", "authorize_submit", ["POST"], None),
    _r("/oauth/v1/token", "token", ["POST"], "oauth"),
    _r("/oauth/v3/token", "token", ["POST"], "oauth"),
    _r("/oauth/2026-03/token", "token", ["POST"], "oauth"),
    _r("/oauth/v3/token/introspect", "introspect", ["POST"], "oauth"),
    _r("/oauth/2026-03/token/introspect", "introspect", ["POST"], "oauth"),
    _r("/oauth/v3/token/revoke", "revoke", ["POST"], "oauth"),
    _r("/oauth/2026-03/token/revoke", "revoke", ["POST"], "oauth"),
    _r("/oauth/v1/access-tokens/<token>", "access_token_info", ["GET"], "oauth"),
    _r("/oauth/v1/refresh-tokens/<token>", "refresh_token_info", ["GET"], "oauth"),
    _r("/oauth/v1/refresh-tokens/<token>", "refresh_token_delete", ["DELETE"], "oauth"),
    _r("/appinstalls/v3/external-install", "external_uninstall", ["DELETE"]),
    *[_r(p, "schemas_list", ["GET"]) for p in _SCH],
    *[_r(p, "schema_create", ["POST"]) for p in _SCH],
    *[_r(p + "/<object_type>", "schema_get", ["GET"]) for p in _SCH],
    *[_r(p + "/<object_type>", "schema_patch", ["PATCH"]) for p in _SCH],
    *[_r(p + "/<object_type>", "schema_delete", ["DELETE"]) for p in _SCH],
    *[_r(p + "/<object_type>/associations", "schema_assoc_create", ["POST"]) for p in _SCH],
    _r(_PROP, "props_list", ["GET"]),
    _r(_PROP, "prop_create", ["POST"]),
    _r(_PROP + "/batch/create", "props_batch_create", ["POST"]),
    _r(_PROP + "/batch/read", "props_batch_read", ["POST"]),
    _r(_PROP + "/groups", "groups_list", ["GET"]),
    _r(_PROP + "/groups", "group_create", ["POST"]),
    _r(_PROP + "/groups/<group_name>", "group_get", ["GET"]),
    _r(_PROP + "/groups/<group_name>", "group_patch", ["PATCH"]),
    _r(_PROP + "/groups/<group_name>", "group_delete", ["DELETE"]),
    _r(_PROP + "/<property_name>", "prop_get", ["GET"]),
    _r(_PROP + "/<property_name>", "prop_patch", ["PATCH"]),
    _r(_PROP + "/<property_name>", "prop_delete", ["DELETE"]),
    _r(_OBJ, "objects_list", ["GET"]),
    _r(_OBJ, "object_create", ["POST"]),
    _r(_OBJ + "/search", "objects_search", ["POST"]),
    _r(_OBJ + "/batch/create", "batch_create", ["POST"]),
    _r(_OBJ + "/batch/read", "batch_read", ["POST"]),
    _r(_OBJ + "/batch/update", "batch_update", ["POST"]),
    _r(_OBJ + "/batch/upsert", "batch_upsert", ["POST"]),
    _r(_OBJ + "/batch/archive", "batch_archive", ["POST"]),
    _r(_OBJ + "/<object_id>", "object_get", ["GET"]),
    _r(_OBJ + "/<object_id>", "object_patch", ["PATCH"]),
    _r(_OBJ + "/<object_id>", "object_delete", ["DELETE"]),
    _r(_A4 + "/batch/create", "assoc_batch_create", ["POST"]),
    _r(_A4 + "/batch/associate/default", "assoc_batch_default", ["POST"]),
    _r(_A4 + "/batch/read", "assoc_batch_read", ["POST"]),
    _r(_A4 + "/batch/archive", "assoc_batch_archive", ["POST"]),
    _r(_A4 + "/batch/labels/archive", "assoc_batch_labels_archive", ["POST"]),
    _r(_A4 + "/labels", "labels_list", ["GET"]),
    _r(_A4 + "/labels", "label_create", ["POST"]),
    _r(_A4 + "/labels", "label_update", ["PUT"]),
    _r(_A4 + "/labels/<int:type_id>", "label_delete", ["DELETE"]),
    _r(_O4 + "/<to_type>", "assoc_list", ["GET"]),
    _r(_O4 + "/<to_type>/<to_id>", "assoc_put", ["PUT"]),
    _r(_O4 + "/<to_type>/<to_id>", "assoc_delete", ["DELETE"]),
    _r(_O4 + "/default/<to_type>/<to_id>", "assoc_put_default", ["PUT"]),
    _r(_PIPE, "pipelines_list", ["GET"]),
    _r(_PIPE + "/<pipeline_id>", "pipeline_get", ["GET"]),
    _r(_PIPE + "/<pipeline_id>/stages", "stages_list", ["GET"]),
    _r(_PIPE + "/<pipeline_id>/stages/<stage_id>", "stage_get", ["GET"]),
    _r(_TL + "/<int:app_id>/event-templates", "templates_list", ["GET"], "developer"),
    _r(_TL + "/<int:app_id>/event-templates", "template_create", ["POST"], "developer"),
    _r(_TL + "/events", "event_create", ["POST"]),
    _r(_TL + "/events/batch/create", "events_batch_create", ["POST"]),
    _r(_TL + "/events/<template_id>/<event_id>", "event_get", ["GET"]),
]


def create_app(sandbox: HubSpotSandbox) -> Callable:
    """The WSGI app serving `sandbox` (auth and API base are the same server)."""
    url_map = Map([r.empty() for r in _RULES], strict_slashes=False)
    handlers = _Handlers(sandbox)

    def app(environ, start_response):
        request = Request(environ)
        response = _dispatch(sandbox, handlers, url_map, request)
        return response(environ, start_response)

    app.sandbox = sandbox  # type: ignore[attr-defined]
    return app


def _dispatch(sb: HubSpotSandbox, handlers: _Handlers, url_map: Map, request: Request) -> Response:
    adapter = url_map.bind_to_environ(request.environ)
    path, method = request.path, request.method
    try:
        rule, args = adapter.match(return_rule=True)
    except MethodNotAllowed:
        return _json_response(
            405, ApiError(405, "VALIDATION_ERROR", f"{method} is not allowed on {path}").body
        )
    except NotFound:
        sb.unrouted_calls.append({"method": method, "path": path})
        return _json_response(
            404, ApiError(404, "OBJECT_NOT_FOUND", f"No sandbox route for {method} {path}").body
        )
    except HTTPException as e:  # redirects for trailing slashes etc.
        return e.get_response(request.environ)  # type: ignore[return-value]
    (name, auth) = rule.endpoint
    if auth is None:
        return getattr(handlers, name)(request, **args)
    endpoint = f"{method} {_template(rule)}"
    if not sb.v1_oauth and path.startswith("/oauth/v1/"):
        return _v1_oauth_gone(sb, method, path, endpoint)

    token = None
    bearer = request.headers.get("Authorization", "")
    if bearer.lower().startswith("bearer "):
        token = sb.tokens.get(bearer[7:].strip())
    portal = sb.portals.get(token.portal_id) if token else None

    response = _handle(sb, handlers, request, name, auth, args, token, portal)
    if sb.contract is not None and sb.contract.enabled and not getattr(response, "_fault", False):
        response = _check_contract(sb, request, response)

    if portal is None and name in ("token", "introspect") and response.status_code == 200:
        try:
            portal = sb.portals.get(json.loads(response.get_data())["hub_id"])
        except (ValueError, KeyError):
            portal = None
    entry = {
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "status": response.status_code,
        "at": sb.now(),
    }
    if portal is not None:
        sb.call_log.record(portal.portal_id, endpoint, entry)
    else:
        with sb.lock:
            sb.unrouted_calls.append(entry)
    return response


def _v1_oauth_gone(sb: HubSpotSandbox, method: str, path: str, endpoint: str) -> Response:
    """`v1_oauth=False`: the v1 OAuth API as HubSpot will answer after its removal.

    "The v1 OAuth API endpoints will remain accessible until February 16th, 2027"
    (https://developers.hubspot.com/changelog/v1-oauth-api-deprecation; migration guide
    https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/migration-guide).
    What a removed endpoint answers is not documented: the sandbox answers 404 (*emulator
    choice*) with HubSpot's error shape, so any remaining v1 call fails loudly.
    """
    entry = {"method": method, "path": path, "endpoint": endpoint, "status": 404, "at": sb.now()}
    with sb.lock:
        sb.unrouted_calls.append(entry)
        sb.v1_oauth_calls.append(entry)
    return _json_response(
        404,
        ApiError(
            404,
            "OBJECT_NOT_FOUND",
            f"{method} {path}: the v1 OAuth API was removed on 2027-02-16; use "
            "/oauth/2026-03/token and /oauth/2026-03/token/introspect",
        ).body,
    )


def _handle(
    sb: HubSpotSandbox,
    handlers: _Handlers,
    request: Request,
    name: str,
    auth: str,
    args: dict,
    token: _Token | None,
    portal: Portal | None,
) -> Response:
    fault = sb.faults.take(request.path, request.method)
    if fault:
        resp = _fault_response(sb, fault.kind, request)
        resp._fault = True  # type: ignore[attr-defined]
        return resp
    if sb.contract is not None and sb.contract.enabled:
        op = sb.contract.find(request.method, request.path)
        if op is not None:
            problems = sb.contract.check_request(
                op,
                {k: request.args.getlist(k) for k in request.args},
                request.headers.get("Content-Type", ""),
                request.get_data(),
            )
            if problems:
                msg = (
                    f"Sandbox contract violation: {request.method} {request.path} does not "
                    f"match {op.spec_file} {op.method} {op.template}: " + "; ".join(problems)
                )
                sb.contract_violations.append(msg)
                log.error(msg)
                if sb.contract_mode == "strict":
                    return _json_response(
                        500, ApiError(500, "SANDBOX_CONTRACT_VIOLATION", msg).body
                    )
    try:
        if auth == "api":
            if token is None or token.kind != "access":
                raise ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at "
                    "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                )
            if token.revoked:
                raise ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    "The OAuth token used to make this call is no longer valid "
                    "(the app was uninstalled or the token revoked).",
                )
            now = sb.now()
            if token.expires_at is not None and now >= token.expires_at:
                raise _expired_error(now - token.expires_at)
            limited = _rate_limit(sb, token, name == "objects_search")
            if limited is not None:
                return limited
        ctx = _Ctx(request, token, portal)
        with sb.lock:
            result = getattr(handlers, name)(ctx, **args)
        if isinstance(result, Response):
            response = result
        else:
            status, body = result
            response = _json_response(status, body)
    except ApiError as e:
        response = _json_response(e.status, e.body, e.headers)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # A body the handler could not read (only reachable with contract checks off or warn).
        log.exception("HubSpot sandbox: cannot handle %s %s", request.method, request.path)
        response = _json_response(
            400, ApiError(400, "VALIDATION_ERROR", f"Invalid input JSON: {e!r}").body
        )
    if auth == "api" and token is not None and name != "objects_search":
        _rate_headers(sb, token, response)
    return response


def _window(sb: HubSpotSandbox, key: tuple) -> collections.deque:
    return sb._windows.setdefault(key, collections.deque())


def _rate_limit(sb: HubSpotSandbox, token: _Token, search: bool) -> Response | None:
    if not sb.rate_limits_enabled:
        return None
    now = sb.now()
    with sb.lock:
        if search:
            key, limit, span, policy = (
                ("search", token.token),
                sb.search_rate_per_second,
                1.0,
                "SECONDLY",
            )
        else:
            key, limit, span, policy = (
                ("ten", token.portal_id, token.app_id),
                sb.rate_limit_max,
                sb.rate_limit_window,
                "TEN_SECONDLY_ROLLING",
            )
        win = _window(sb, key)
        while win and win[0] <= now - span:
            win.popleft()
        if len(win) >= limit:
            return _rate_limited_response(sb, policy)
        win.append(now)
    return None


def _rate_limited_response(sb: HubSpotSandbox, policy: str) -> Response:
    what = "ten second rolling" if policy == "TEN_SECONDLY_ROLLING" else "secondly"
    body = {
        "status": "error",
        "message": f"You have reached your {what} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": _corr(),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
        "category": "RATE_LIMITS",
    }
    headers = {}
    if sb.rate_limit_retry_after is not None:
        headers["Retry-After"] = str(sb.rate_limit_retry_after)
    return _json_response(429, body, headers)


def _rate_headers(sb: HubSpotSandbox, token: _Token, response: Response) -> None:
    win = sb._windows.get(("ten", token.portal_id, token.app_id), ())
    response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(
        int(sb.rate_limit_window * 1000)
    )
    response.headers["X-HubSpot-RateLimit-Max"] = str(sb.rate_limit_max)
    response.headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, sb.rate_limit_max - len(win)))


def _fault_response(sb: HubSpotSandbox, fault: str, request: Request) -> Response:
    if fault == "429":
        return _rate_limited_response(sb, "TEN_SECONDLY_ROLLING")
    if fault == "401_expired":
        return _json_response(401, _expired_error(120).body)
    if fault in ("500", "502", "503"):
        status = int(fault)
        cat = {500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}[status]
        return _json_response(
            status, ApiError(status, cat, f"Injected {status} from the HubSpot sandbox").body
        )
    if fault == "timeout":
        sb._stop.wait(sb.timeout_fault_seconds)
        return _json_response(504, ApiError(504, "GATEWAY_TIMEOUT", "Injected timeout").body)
    # drop: close the connection without answering
    sock = request.environ.get("sandbox.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=500)


def _check_contract(sb: HubSpotSandbox, request: Request, response: Response) -> Response:
    op = sb.contract.find(request.method, request.path)  # type: ignore[union-attr]
    if op is None:
        return response
    try:
        body = json.loads(response.get_data() or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("category") == "SANDBOX_CONTRACT_VIOLATION":
        return response
    problems = sb.contract.check_response(  # type: ignore[union-attr]
        op, response.status_code, response.headers.get("Content-Type", ""), response.get_data()
    )
    if not problems:
        return response
    msg = (
        f"Sandbox contract violation: the sandbox's own answer to {request.method} "
        f"{request.path} does not match {op.spec_file} {op.method} {op.template}: "
        + "; ".join(problems)
    )
    sb.contract_violations.append(msg)
    log.error(msg)
    if sb.contract_mode == "strict":
        return _json_response(500, ApiError(500, "SANDBOX_CONTRACT_VIOLATION", msg).body)
    return response


class _Handlers(HandlerBase, OAuthHandlers, SchemaHandlers, PipelineHandlers, ObjectHandlers,
                AssociationHandlers, TimelineHandlers):
    """Every route's handler, one mixin per API area."""


# --------------------------------------------------------------------------------------------
# server


def serve(
    sandbox: HubSpotSandbox, host: str = "127.0.0.1", port: int = 0, ssl_context=None
) -> ServerHandle:
    """Start the sandbox on a daemon thread; port 0 picks a free port. Returns the running
    server: `.url` (e.g. http://127.0.0.1:54321), `.shutdown()`; a context manager.

    `ssl_context` is an `ssl.SSLContext` or a (cert, key) tuple, e.g. from trustme; with TLS the
    URL uses the host name `localhost`, so the certificate must cover it.
    """
    shown = "localhost" if ssl_context and host in ("127.0.0.1", "localhost") else None
    handle = serve_wsgi(create_app(sandbox), host, port, sandbox=sandbox,
                        ssl_context=ssl_context, url_host=shown, name="hubspot-sandbox")
    sandbox.base_url = handle.url
    sandbox._stop.clear()
    handle.before_shutdown.append(sandbox._stop.set)
    return handle


SandboxServer = ServerHandle  # the name this module used before the kit
