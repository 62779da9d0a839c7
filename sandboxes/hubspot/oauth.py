"""The sandbox's pages (home, consent) and the OAuth token endpoints."""

from __future__ import annotations

import html
import logging
import urllib.error
import urllib.parse
import urllib.request

from werkzeug.wrappers import Request, Response

from .sandbox import (
    ApiError,
    Portal,
    _Ctx,
    _expired_error,
    _json_response,
)

log = logging.getLogger("sandboxes.hubspot")


class OAuthHandlers:
    # ---- pages ---------------------------------------------------------------------------
    def home(self, request: Request) -> Response:
        """A small page for people running the sandbox by hand: portals, apps, deals, and a
        form to move a deal's stage as a sales rep would (fires the deal webhooks)."""
        sb = self.sb
        with sb.lock:
            rows = "".join(
                f"<tr><td>{p.portal_id}</td><td>{html.escape(p.name)}</td><td>{p.tier}</td>"
                f"<td>{', '.join(s['objectTypeId'] + ' ' + s['name'] for s in p.schemas.values())}"
                f"</td></tr>"
                for p in sb.portals.values()
            )
            apps = "".join(
                f"<tr><td>{a.app_id}</td><td><code>{html.escape(a.client_id)}</code></td>"
                f"<td><code>{html.escape(a.client_secret)}</code></td></tr>"
                for a in sb.apps.values()
            )
            deals = "".join(
                self._deal_row(p, d, sb.deal_timeline(p.portal_id, d["id"]))
                for p in sb.portals.values()
                for d in p.objects.get("0-3", {}).values()
                if not d["archived"]
            )
        checks = sb.contract_mode if sb.contract and sb.contract.enabled else "off"
        hook = html.escape(sb.webhook_target_url or "not set: events wait for drain_events()")
        body = (
            "<!doctype html><title>HubSpot sandbox</title><h1>HubSpot sandbox</h1>"
            f"<p>API base and auth base: <code>{html.escape(request.host_url)}</code>. "
            f"Contract checks: {checks}. Webhook target: <code>{hook}</code>.</p>"
            "<h2>Portals</h2><table border=1><tr><th>id</th><th>name</th><th>tier</th>"
            f"<th>custom objects</th></tr>{rows}</table>"
            "<h2>Apps</h2><table border=1><tr><th>app id</th><th>client id</th>"
            f"<th>client secret</th></tr>{apps}</table>"
            "<h2>Deals</h2><table border=1><tr><th>portal</th><th>deal</th><th>name</th>"
            f"<th>pipeline</th><th>stage</th><th>move as a rep</th><th>timeline (apps)</th></tr>"
            f"{deals}</table>"
        )
        return Response(body, content_type="text/html; charset=utf-8")

    @staticmethod
    def _timeline_cell(entries: list[dict]) -> str:
        """The deal's timeline as a rep sees it: each app event's header, or the note's body."""
        items = "".join(
            f"<li>{html.escape(str(e['timestamp']))}: "
            + (html.escape(e["template"]) + ": " + html.escape(e["tokens"].get("mp_subject", ""))
               if e["type"] == "event" else "note: " + html.escape(e["body"]))
            + "</li>"
            for e in entries
        )
        return f"<td><ul>{items}</ul></td>" if items else "<td></td>"

    @classmethod
    def _deal_row(cls, portal: Portal, deal: dict, timeline: list[dict] = ()) -> str:
        props = deal["properties"]
        pipe = portal.pipelines.get("0-3", {}).get(props.get("pipeline", ""), {"stages": []})
        options = "".join(
            f'<option value="{html.escape(st["id"])}"'
            f"{' selected' if st['id'] == props.get('dealstage') else ''}>"
            f"{html.escape(st['label'])}</option>"
            for st in pipe["stages"]
        )
        return (
            f"<tr><td>{portal.portal_id}</td><td>{deal['id']}</td>"
            f"<td>{html.escape(props.get('dealname', ''))}</td>"
            f"<td>{html.escape(props.get('pipeline', ''))}</td>"
            f"<td>{html.escape(props.get('dealstage', ''))}</td>"
            f'<td><form method=post action="/_sandbox/rep-move">'
            f'<input type=hidden name=portal_id value="{portal.portal_id}">'
            f'<input type=hidden name=deal_id value="{deal["id"]}">'
            f"<select name=dealstage>{options}</select> <button>Move</button></form></td>"
            f"{cls._timeline_cell(list(timeline))}</tr>"
        )

    def rep_move(self, request: Request) -> Response:
        f = request.form
        try:
            self.sb.rep_update_deal(
                int(f["portal_id"]), f["deal_id"], {"dealstage": f["dealstage"]}
            )
        except (KeyError, ValueError, ApiError) as e:
            return self._page("Couldn't move the deal", f"<p>{html.escape(str(e))}</p>", 400)
        return Response(status=303, headers={"Location": "/"})

    def sandbox_state(self, request: Request) -> Response:
        sb = self.sb
        with sb.lock:
            state = {
                "portals": [
                    {
                        "portalId": p.portal_id,
                        "name": p.name,
                        "tier": p.tier,
                        "schemas": [s["objectTypeId"] for s in p.schemas.values()],
                        "records": {t: len(o) for t, o in p.objects.items()},
                        "callCounts": sb.call_counts(p.portal_id),
                    }
                    for p in sb.portals.values()
                ],
                "apps": [{"appId": a.app_id, "clientId": a.client_id} for a in sb.apps.values()],
                "contractViolations": sb.contract_violations[-20:],
            }
        return _json_response(200, state)

    def authorize_page(self, request: Request, portal_hint: int | None = None) -> Response:
        a = request.args
        app = self.sb._app_by_client(a.get("client_id", ""))
        if app is None:
            return self._page("Invalid app", "<p>Unknown client_id.</p>", 400)
        if not a.get("redirect_uri"):
            return self._page("Invalid request", "<p>redirect_uri is required.</p>", 400)
        if app.redirect_uris and a["redirect_uri"] not in app.redirect_uris:
            return self._page(
                "Invalid redirect",
                "<p>redirect_uri does not match the app's redirect URLs.</p>",
                400,
            )
        required = a.get("scope", "").split()
        optional = a.get("optional_scope", "").split()
        portals = [
            p for p in self.sb.portals.values() if portal_hint is None or p.portal_id == portal_hint
        ]
        options = "".join(
            f'<option value="{p.portal_id}">{html.escape(p.name)} ({p.portal_id}, '
            f"{p.tier})</option>"
            for p in portals
        )
        # Who is signed in to HubSpot: real HubSpot knows; here the tester picks a user of the
        # chosen account (default: its first user, the admin), e.g. a rep for "Sign in".
        people = "".join(
            f'<option value="{uid}">{html.escape(email)}</option>'
            for p in portals for uid, email in p.users
        )
        scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in required)
        opt = "".join(f"<li><code>{html.escape(s)}</code> (optional)</li>" for s in optional)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(a.get(k, ""))}">'
            for k in ("client_id", "redirect_uri", "scope", "optional_scope", "state")
        )
        body = (
            f"<p><b>{html.escape(app.name)}</b> is requesting access to your HubSpot account."
            f'</p><ul>{scopes}{opt}</ul><form method=post action="/oauth/authorize">{hidden}'
            f"<label>Choose an account <select name=portal_id>{options}</select></label> "
            f"<label>Signed in as <select name=user_id><option value=\"\">the account's "
            f"first user</option>{people}</select></label> "
            f"<button name=action value=connect>Connect app</button> "
            f"<button name=action value=deny>Deny</button></form>"
        )
        return self._page("Connect app", body, 200)

    def authorize_submit(self, request: Request) -> Response:
        f = request.form
        redirect_uri = f.get("redirect_uri", "")
        state = f.get("state")
        app = self.sb._app_by_client(f.get("client_id", ""))
        if app is None or not redirect_uri:
            return self._page(
                "Invalid request", "<p>Unknown client_id or missing redirect_uri.</p>", 400
            )
        if app.redirect_uris and redirect_uri not in app.redirect_uris:
            return self._page("Invalid redirect", "<p>redirect_uri mismatch.</p>", 400)
        params: dict[str, str] = {}
        if f.get("action") == "deny":
            params = {
                "error": "access_denied",
                "error_description": "The user denied access to the app.",
            }
        else:
            try:
                portal_id = int(f.get("portal_id", ""))
                if portal_id not in self.sb.portals:
                    raise ValueError("unknown account")
                user_id = int(f["user_id"]) if f.get("user_id") else None
                if user_id is not None and user_id not in dict(self.sb.portals[portal_id].users):
                    raise ValueError("that user is not a user of this account")
                params = {
                    "code": self.sb.authorize(
                        client_id=app.client_id,
                        redirect_uri=redirect_uri,
                        scopes=f.get("scope", "").split(),
                        optional_scopes=f.get("optional_scope", "").split(),
                        portal_id=portal_id,
                        user_id=user_id,
                    )
                }
            except ValueError as e:
                return self._page("Couldn't connect app", f"<p>{html.escape(str(e))}</p>", 400)
        if state is not None:
            params["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return Response(
            status=302, headers={"Location": redirect_uri + sep + urllib.parse.urlencode(params)}
        )

    @staticmethod
    def _page(title: str, body: str, status: int) -> Response:
        return Response(
            f"<!doctype html><title>{html.escape(title)} | HubSpot sandbox</title>"
            f"<h1>{html.escape(title)}</h1>{body}",
            status=status,
            content_type="text/html; charset=utf-8",
        )

    # ---- oauth ---------------------------------------------------------------------------
    def _oauth_error(self, status_code: str, error: str, message: str) -> ApiError:
        e = ApiError(400, "VALIDATION_ERROR", message)
        e.body.update({"status": status_code, "error": error, "error_description": message})
        return e

    @staticmethod
    def _versioned(ctx: _Ctx) -> bool:
        """/oauth/v3/... and /oauth/2026-03/...: every parameter in the form body."""
        return not ctx.request.path.startswith("/oauth/v1/")

    def _body_only(self, ctx: _Ctx) -> None:
        """The v3 and date-versioned endpoints read parameters from the form body only ("Each
        of the v3 endpoints require that parameters are included in the request body",
        https://developers.hubspot.com/docs/api-reference/auth-oauth-v3/guide; the 2026-03 spec
        declares no query parameters). v1 also took client_secret/refresh_token from the query
        string; here a secret in the URL is refused instead of silently read."""
        leaked = sorted(
            k
            for k in ctx.request.args
            if k in ("client_id", "client_secret", "refresh_token", "code", "token")
        )
        if leaked:
            raise self._oauth_error(
                "BAD_REQUEST",
                "invalid_request",
                f"{', '.join(leaked)} must be sent in the form body, not the query string",
            )

    def _client(self, ctx: _Ctx):
        form = ctx.request.form
        app = self.sb._app_by_client(form.get("client_id", ""))
        if app is None:
            raise self._oauth_error(
                "BAD_CLIENT_ID", "invalid_client", "missing or unknown client id"
            )
        secret = form.get("client_secret")
        if secret is None and not self._versioned(ctx):
            secret = ctx.request.args.get("client_secret")
        if secret != app.client_secret:
            raise self._oauth_error(
                "BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret"
            )
        return app

    def token(self, ctx: _Ctx):
        sb = self.sb
        form = ctx.request.form
        grant = form.get("grant_type")
        if self._versioned(ctx):
            self._body_only(ctx)
        app = self._client(ctx)
        if grant == "authorization_code":
            code = sb.codes.get(form.get("code", ""))
            if (
                code is None
                or code.get("used")
                or code["expires_at"] < sb.now()
                or code["client_id"] != app.client_id
            ):
                raise self._oauth_error(
                    "BAD_AUTH_CODE", "invalid_grant", "auth code not found, expired or already used"
                )
            if form.get("redirect_uri") != code["redirect_uri"]:
                raise self._oauth_error(
                    "BAD_REDIRECT_URI",
                    "invalid_grant",
                    "redirect_uri does not match the one used to authorize",
                )
            code["used"] = True
            portal = sb.portals[code["portal_id"]]
            portal.installed_apps.add(app.app_id)
            ctx.portal = portal
            return 200, sb._mint(portal, app, code["user_id"], code["user"], code["scopes"])
        if grant == "refresh_token":
            rt = form.get("refresh_token")
            if rt is None and not self._versioned(ctx):
                rt = ctx.request.args.get("refresh_token", "")
            tok = sb.tokens.get(rt)
            if (
                tok is None
                or tok.kind != "refresh"
                or tok.revoked
                or tok.client_id != app.client_id
            ):
                raise self._oauth_error(
                    "BAD_REFRESH_TOKEN",
                    "invalid_grant",
                    "refresh token is invalid, expired or revoked",
                )
            portal = sb.portals[tok.portal_id]
            ctx.portal = portal
            return 200, sb._mint(portal, app, tok.user_id, tok.user, tok.scopes, refresh=rt)
        raise self._oauth_error(
            "BAD_GRANT_TYPE", "unsupported_grant_type", f"unsupported grant_type {grant!r}"
        )

    def introspect(self, ctx: _Ctx):
        """POST /oauth/2026-03/token/introspect (and /oauth/v3/token/introspect): form body
        client_id, client_secret, token, token_type_hint -> PublicAccessTokenInfoResponse or
        PublicRefreshTokenInfoResponse (spec Auth/Oauth/Rollouts/279897/2026-03/oauth.json,
        `TokenInfoResponseBaseIF`; page
        https://developers.hubspot.com/docs/api-reference/2026-03/authentication/oauth-tokens/token-introspect).
        This is where the portal (`hub_id`) and the installing user (`user_id`, `user`) come
        from after a code exchange.

        *Emulator choices* (not documented): an expired access token answers 200 with
        `active: false` and `expires_in: 0` (the spec's shape still holds); an unknown or revoked
        token, or one issued to another app, answers 400 `invalid_grant` in the standardized
        OAuth error format (an RFC 7662 bare `{"active": false}` would not match the spec).
        """
        self._body_only(ctx)
        app = self._client(ctx)
        sb = self.sb
        value = ctx.request.form.get("token", "")
        t = sb.tokens.get(value)
        if t is None or t.revoked or t.client_id != app.client_id:
            raise self._oauth_error(
                "BAD_TOKEN", "invalid_grant", "token is invalid, expired or revoked"
            )
        portal = sb.portals[t.portal_id]
        ctx.portal = portal
        common = {
            "active": True,
            "app_id": t.app_id,
            "client_id": t.client_id,
            "hub_id": t.portal_id,
            "hub_domain": portal.domain,
            "scopes": list(t.scopes),
            "token": t.token,
            "token_type": "bearer",
            "user": t.user,
            "user_id": t.user_id,
        }
        if t.kind == "refresh":
            return 200, {**common, "token_use": "refresh_token"}
        remaining = max(0, int((t.expires_at or 0) - sb.now()))
        return 200, {
            **common,
            "active": remaining > 0,
            "expires_in": remaining,
            "is_private_distribution": False,
            "token_use": "access_token",
            "signed_access_token": {
                "appId": t.app_id,
                "appInstallId": f"{t.portal_id}-{t.app_id}",
                "audience": "api.hubapi.com",
                "expiresAt": int((t.expires_at or 0) * 1000),
                "hubId": t.portal_id,
                "hublet": "na1",
                "installingUserId": t.user_id,
                "isPrivateDistribution": False,
                "isServiceAccount": False,
                "isUserLevel": False,
                "newSignature": "sandbox",
                "scopeToScopeGroupPks": "",
                "scopes": " ".join(t.scopes),
                "signature": "sandbox",
                "trialScopeToScopeGroupPks": "",
                "trialScopes": "",
                "userId": t.user_id,
            },
        }

    def revoke(self, ctx: _Ctx):
        """POST /oauth/2026-03/token/revoke: deletes the refresh token given in the form body,
        the replacement for DELETE /oauth/v1/refresh-tokens/{token}
        (https://developers.hubspot.com/changelog/v1-oauth-api-deprecation). The spec documents
        no success body; the sandbox answers 204 like the v1 call it replaces (*emulator
        choice*). Like v1, it does not uninstall the app."""
        self._body_only(ctx)
        app = self._client(ctx)
        t = self.sb.tokens.get(ctx.request.form.get("token", ""))
        if t is None or t.kind != "refresh" or t.client_id != app.client_id:
            raise self._oauth_error(
                "BAD_REFRESH_TOKEN", "invalid_grant", "refresh token is invalid or unknown"
            )
        ctx.portal = self.sb.portals[t.portal_id]
        t.revoked = True
        return 204, None

    def access_token_info(self, ctx: _Ctx, token: str):
        t = self.sb.tokens.get(token)
        if t is None or t.kind != "access" or t.revoked:
            raise ApiError(404, "OBJECT_NOT_FOUND", "access token not found")
        remaining = int((t.expires_at or 0) - self.sb.now())
        if remaining <= 0:
            raise _expired_error(-remaining)
        ctx.portal = self.sb.portals[t.portal_id]
        return 200, {
            "token": t.token,
            "user": t.user,
            "hub_domain": ctx.portal.domain,
            "scopes": t.scopes,
            "hub_id": t.portal_id,
            "app_id": t.app_id,
            "expires_in": remaining,
            "user_id": t.user_id,
            "token_type": "access",
            "is_private_distribution": False,
        }

    def refresh_token_info(self, ctx: _Ctx, token: str):
        t = self.sb.tokens.get(token)
        if t is None or t.kind != "refresh" or t.revoked:
            raise ApiError(404, "OBJECT_NOT_FOUND", "refresh token not found")
        return 200, {
            "token": t.token,
            "user": t.user,
            "hub_domain": self.sb.portals[t.portal_id].domain,
            "scopes": t.scopes,
            "hub_id": t.portal_id,
            "client_id": t.client_id,
            "user_id": t.user_id,
            "token_type": "refresh",
        }

    def refresh_token_delete(self, ctx: _Ctx, token: str):
        t = self.sb.tokens.get(token)
        if t is None or t.kind != "refresh":
            raise ApiError(404, "OBJECT_NOT_FOUND", "refresh token not found")
        t.revoked = True
        return 204, None

    def external_uninstall(self, ctx: _Ctx):
        self._need(ctx, "oauth")
        self.sb.uninstall(ctx.portal.portal_id, ctx.token.app_id)
        return 204, None

