"""OAuth (web-server flow with PKCE, refresh, revoke, introspect) and identity endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from datetime import timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from werkzeug.wrappers import Request, Response

from .sandbox import (
    AUTH_CODE_TTL,
    MIN_API_VERSION,
    ConnectedApp,
    Org,
    User,
    _AuthCode,
    _fmt_dt,
    _json,
    _OAuthError,
    _release_label,
    _Session,
    normalize_id,
)


class OAuthHandlers:
    # ---- OAuth --------------------------------------------------------------------------------
    def oauth(self, request: Request, path: str) -> Response:
        try:
            if path == "/services/oauth2/authorize":
                return self.authorize(request)
            if path == "/services/oauth2/token" and request.method == "POST":
                return self.token(request)
            if path == "/services/oauth2/revoke" and request.method in ("POST", "GET"):
                return self.revoke(request)
            if path == "/services/oauth2/introspect" and request.method == "POST":
                return self.introspect(request)
            if path == "/services/oauth2/userinfo":
                return self.userinfo(request)
        except _OAuthError as e:
            return _json({"error": e.error, "error_description": e.description}, e.status)
        return Response("Not Found", status=404)

    def _client_creds(self, request: Request) -> tuple:
        auth = request.authorization
        if auth and auth.type == "basic":
            return auth.username, auth.password
        return request.form.get("client_id"), request.form.get("client_secret")

    def authorize(self, request: Request) -> Response:
        sb = self.sb
        params = request.args if request.method == "GET" else request.form
        app = sb.apps.get(params.get("client_id", ""))
        if app is None:
            return self._page("Error", "<p>error=invalid_client_id: client identifier "
                                       "invalid</p>", 400)
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or (app.redirect_uris and redirect_uri not in app.redirect_uris):
            return self._page("Error", "<p>error=redirect_uri_mismatch: redirect_uri must match "
                                       "configuration</p>", 400)
        state = params.get("state")

        def back(**q) -> Response:
            if state is not None:
                q["state"] = state
            parts = urlsplit(redirect_uri)
            query = (parts.query + "&" if parts.query else "") + urlencode(q)
            return Response(status=302, headers={
                "Location": urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))})

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type",
                        error_description="response type not supported")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "S256")
        if app.require_pkce and not challenge:
            return back(error="invalid_request",
                        error_description="missing required code challenge")
        if challenge and method != "S256":
            return back(error="invalid_request",
                        error_description="invalid code challenge method")
        scope = params.get("scope") or " ".join(app.scopes)
        choice = None
        if request.method == "POST":
            if params.get("action") != "allow":
                return back(error="access_denied",
                            error_description="end-user denied authorization")
            choice = params.get("login", "")
        elif sb.auto_approve:
            if sb.auto_approve is True:
                org = next(iter(sb.orgs.values()))
                choice = f"{org.id}:{org.admin.id}"
            else:
                choice = ":".join(sb.auto_approve)
        if choice is None:
            return self.login_page(app, params, scope)
        org_id, _, user_id = choice.partition(":")
        org = sb.orgs.get(normalize_id(org_id) or "")
        user = org.users.get(normalize_id(user_id) or "") if org else None
        if org is None or user is None:
            return self._page("Error", "<p>Please choose a user.</p>", 400)
        may = user.can_approve_uninstalled_apps
        if may is None:
            may = user.is_admin
        if not org.package_installed and not may:
            return back(error="invalid_client",
                        error_description="app must be installed into org")
        code = "aPrx" + secrets.token_urlsafe(40)
        sb.auth_codes[code] = _AuthCode(code, app.client_id, redirect_uri, org.id, user.id,
                                        scope, challenge,
                                        sb.clock.now() + timedelta(seconds=AUTH_CODE_TTL))
        return back(code=code)

    def login_page(self, app: ConnectedApp, params, scope: str) -> Response:
        hint = params.get("login_hint", "")
        options = []
        for org in self.sb.orgs.values():
            for u in org.users.values():
                label = (f"{u.username} — {org.name}"
                         f"{' (sandbox)' if org.is_sandbox else ''}"
                         f"{'' if org.package_installed else ' [package not installed]'}"
                         f" [{org.my_domain_host}]")
                sel = " selected" if hint and hint == u.username else ""
                options.append(f'<option value="{org.id}:{u.id}"{sel}>{html.escape(label)}'
                               f'</option>')
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items(multi=True)
                         if k not in ("action", "login"))
        body = (f"<h1>Log in to Salesforce (sandbox)</h1>"
                f"<form method=\"post\" action=\"/services/oauth2/authorize\">{hidden}"
                f"<p><label for=\"login\">Org and user</label> "
                f"<select id=\"login\" name=\"login\">{''.join(options)}</select></p>"
                f"<h2>Allow Access?</h2><p><b>{html.escape(app.name)}</b> is asking to: "
                f"{html.escape(scope)}</p>"
                f"<button type=\"submit\" name=\"action\" value=\"allow\" id=\"oaapprove\">Allow"
                f"</button> <button type=\"submit\" name=\"action\" value=\"deny\" "
                f"id=\"oadeny\">Deny</button></form>")
        return self._page("Log in | Salesforce sandbox", body)

    def _page(self, title: str, body: str, status: int = 200) -> Response:
        return Response(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>"
                        f"{html.escape(title)}</title></head><body>{body}</body></html>",
                        status=status, content_type="text/html; charset=utf-8")

    def token(self, request: Request) -> Response:
        sb = self.sb
        form = request.form
        client_id, secret = self._client_creds(request)
        app = sb.apps.get(client_id or "")
        if app is None:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        grant = form.get("grant_type")
        if grant not in ("authorization_code", "refresh_token"):
            raise _OAuthError("unsupported_grant_type", "grant type not supported")
        if secret is not None and secret != app.client_secret:
            raise _OAuthError("invalid_client", "invalid client credentials")
        if app.require_secret and secret is None:
            raise _OAuthError("invalid_client", "invalid client credentials")
        base = request.host_url
        if grant == "authorization_code":
            code = sb.auth_codes.get(form.get("code", ""))
            if code is None or code.client_id != app.client_id or code.used:
                if code is not None:
                    code.used = True
                raise _OAuthError("invalid_grant", "invalid authorization code")
            if sb.clock.now() > code.expires_at:
                raise _OAuthError("invalid_grant", "expired authorization code")
            if form.get("redirect_uri") != code.redirect_uri:
                raise _OAuthError("redirect_uri_mismatch",
                                  "redirect_uri must match configuration")
            if code.challenge:
                verifier = form.get("code_verifier")
                computed = base64.urlsafe_b64encode(
                    hashlib.sha256((verifier or "").encode()).digest()).decode().rstrip("=")
                if not verifier or not hmac.compare_digest(computed, code.challenge):
                    raise _OAuthError("invalid_grant", "invalid code verifier")
            elif form.get("code_verifier"):
                raise _OAuthError("invalid_grant", "invalid code verifier")
            code.used = True
            org = sb.orgs[code.org_id]
            return _json(sb._token_response(app, org, org.users[code.user_id], code.scope, base,
                                            new_refresh=True),
                         headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,"
                                                   "no-store,private"})
        rt = sb.refresh_tokens.get(form.get("refresh_token", ""))
        if rt is None or rt.revoked or rt.client_id != app.client_id or \
                rt.org_id not in sb.orgs or rt.user_id not in sb.orgs[rt.org_id].users:
            raise _OAuthError("invalid_grant", "expired access/refresh token")
        org = sb.orgs[rt.org_id]
        if app.rotate_refresh_tokens:
            rt.revoked = True
            body = sb._token_response(app, org, org.users[rt.user_id], rt.scope, base,
                                      new_refresh=True)
        else:
            body = sb._token_response(app, org, org.users[rt.user_id], rt.scope, base,
                                      new_refresh=False, refresh=rt)
        return _json(body, headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,"
                                                     "no-store,private"})

    def revoke(self, request: Request) -> Response:
        sb = self.sb
        token = request.values.get("token", "")
        s = sb.sessions.get(token)
        if s is not None and not s.revoked:
            s.revoked = True
            return Response(status=200)
        rt = sb.refresh_tokens.get(token)
        if rt is not None and not rt.revoked:
            rt.revoked = True
            for s in sb.sessions.values():
                if s.refresh_token == token:
                    s.revoked = True
            return Response(status=200)
        raise _OAuthError("invalid_token", "invalid token")

    def introspect(self, request: Request) -> Response:
        sb = self.sb
        client_id, secret = self._client_creds(request)
        app = sb.apps.get(client_id or "")
        if app is None or secret != app.client_secret:
            raise _OAuthError("invalid_client", "invalid client credentials", 401)
        token = request.form.get("token", "")
        s = sb._session(token) if token in sb.sessions else None
        if s is not None:
            user = sb.orgs[s.org_id].users[s.user_id]
            return _json({"active": True, "scope": s.scope, "client_id": s.client_id,
                          "username": user.username, "sub": f"{request.host_url}id/{s.org_id}/"
                                                           f"{s.user_id}",
                          "token_type": "access_token", "iat": int(s.issued_at.timestamp()),
                          "nbf": int(s.issued_at.timestamp()),
                          "exp": int(s.last_used.timestamp()
                                     + sb.orgs[s.org_id].session_timeout)})
        rt = sb.refresh_tokens.get(token)
        if rt is not None and not rt.revoked:
            user = sb.orgs[rt.org_id].users[rt.user_id]
            return _json({"active": True, "scope": rt.scope, "client_id": rt.client_id,
                          "username": user.username, "token_type": "refresh_token",
                          "sub": f"{request.host_url}id/{rt.org_id}/{rt.user_id}",
                          "iat": int(rt.created_at.timestamp())})
        return _json({"active": False})

    def _bearer(self, request: Request) -> _Session | None:
        auth = request.headers.get("Authorization", "")
        token = None
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        elif auth[:6].lower() == "oauth ":
            token = auth[6:].strip()
        token = token or request.args.get("oauth_token")
        return self.sb._session(token)

    def _user_doc(self, request: Request, org: Org, user: User, version: str | None) -> dict:
        inst = (org.instance_url or request.host_url).rstrip("/")
        v = version or "{version}"
        if v == "latest":
            v = self.sb.latest_api_version
        urls = {
            "enterprise": f"{inst}/services/Soap/c/{v}/{org.id}",
            "metadata": f"{inst}/services/Soap/m/{v}/{org.id}",
            "partner": f"{inst}/services/Soap/u/{v}/{org.id}",
            "rest": f"{inst}/services/data/v{v}/",
            "sobjects": f"{inst}/services/data/v{v}/sobjects/",
            "search": f"{inst}/services/data/v{v}/search/",
            "query": f"{inst}/services/data/v{v}/query/",
            "recent": f"{inst}/services/data/v{v}/recent/",
            "tooling_rest": f"{inst}/services/data/v{v}/tooling/",
            "profile": f"{inst}/{user.id}",
            "users": f"{inst}/services/data/v{v}/chatter/users",
            "custom_domain": f"https://{org.my_domain_host}",
        }
        return urls

    def identity(self, request: Request, path: str) -> Response:
        sb = self.sb
        parts = path.split("/")
        s = self._bearer(request)
        if s is None:
            return Response("Bad_OAuth_Token", status=403, content_type="text/plain")
        if len(parts) != 4:
            return Response("Bad_Id", status=404, content_type="text/plain")
        org_id, user_id = normalize_id(parts[2]), normalize_id(parts[3])
        org = sb.orgs.get(org_id or "")
        if org is None or org.id != s.org_id or user_id not in org.users:
            return Response("Bad_Id", status=403, content_type="text/plain")
        user = org.users[user_id]
        first, _, last = user.name.partition(" ")
        return _json({
            "id": f"{request.host_url}id/{org.id}/{user.id}", "asserted_user": user.id == s.user_id,
            "user_id": user.id, "organization_id": org.id, "username": user.username,
            "nick_name": user.username.split("@")[0], "display_name": user.name,
            "email": user.email, "email_verified": True, "first_name": first, "last_name": last,
            "timezone": user.timezone, "photos": {}, "status": {"created_date": None,
                                                                "body": None},
            "urls": self._user_doc(request, org, user, request.args.get("version")),
            "active": user.active, "user_type": "STANDARD", "language": user.language,
            "locale": user.locale, "utcOffset": -28800000,
            "last_modified_date": _fmt_dt(sb.clock.now()),
            "is_app_installed": org.package_installed,
        })

    def userinfo(self, request: Request) -> Response:
        """GET /services/oauth2/userinfo: OpenID Connect UserInfo of the token's user, only for
        the current user (https://help.salesforce.com/HTViewHelpDoc?id=remoteaccess_using_
        userinfo_endpoint.htm). A token without an identity scope (`openid`, or `id` and its
        synonyms `profile`/`email`, or `full`) is refused, e.g. an install's `api
        refresh_token`; "Sign in with Salesforce" asks for `openid profile email`
        (scopes_supported in https://login.salesforce.com/.well-known/openid-configuration)."""
        s = self._bearer(request)
        if s is None:
            return Response("Bad_OAuth_Token", status=403, content_type="text/plain")
        if not {"openid", "id", "profile", "email", "full"} & set(s.scope.split()):
            return Response("Insufficient_Scope", status=403, content_type="text/plain")
        org = self.sb.orgs[s.org_id]
        user = org.users[s.user_id]
        first, _, last = user.name.partition(" ")
        return _json({
            "sub": f"{request.host_url}id/{org.id}/{user.id}", "user_id": user.id,
            "organization_id": org.id, "preferred_username": user.username,
            "nickname": user.username.split("@")[0], "name": user.name, "email": user.email,
            "email_verified": True, "given_name": first, "family_name": last,
            "zoneinfo": user.timezone, "photos": {},
            "urls": self._user_doc(request, org, user, request.args.get("version")),
            "active": user.active, "user_type": "STANDARD", "language": user.language,
            "locale": user.locale, "utcOffset": -28800000,
            "updated_at": _fmt_dt(self.sb.clock.now()),
            "is_app_installed": org.package_installed,
        })

    # ---- REST ---------------------------------------------------------------------------------
    def versions(self, request: Request) -> Response:
        latest = int(float(self.sb.latest_api_version))
        return _json([{"label": _release_label(v), "url": f"/services/data/v{v}.0",
                       "version": f"{v}.0"} for v in range(MIN_API_VERSION, latest + 1)])

