"""OAuth 2 for every CRM, on authlib: authorize URL, code exchange, refresh, introspection
and revoke.

Per-CRM differences are data: the endpoint URL templates (`endpoints`, formatted with
the bases the caller passes, e.g. `{auth_base}` or `{login_url}`), the scopes and extra
authorize parameters, PKCE or not, and the function that turns a failed token response
into the error taxonomy (each connector's `classify`). Nothing here knows Flask or the
database.

The API (stable; other flows such as sign-in build on it):
    client = OAuthClient(client_id, secret, redirect_uri, endpoints, on_error, scope=..., pkce=...)
    client.authorization_url(state, code_verifier=None, **where) -> str
    client.exchange(code, code_verifier=None, **where) -> dict   # the token response
    client.refresh(refresh_token, **where) -> dict
    client.introspect(token, token_type_hint="access_token", **where) -> dict  # RFC 7662
    client.revoke(token, **where) -> bool                         # never raises
`endpoints` names: "authorize", "token" (required), "introspect", "revoke" (optional).
Every request to the token, introspection and revocation endpoints carries its parameters
and the client credentials in the form body (client_secret_post), never in the URL. A refused
request raises what `on_error` returns; an unreachable endpoint raises Transient.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from .errors import CrmError, Rejected, Transient


class OAuthFailure(Exception):
    """A failed step of a connect flow; `reason` is the name shown to the admin."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail or reason


def new_verifier() -> str:
    """A PKCE code_verifier (RFC 7636: 43-128 unreserved characters)."""
    return generate_token(64)


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"message": response.text[:300]}


@dataclass
class OAuthClient:
    """A confidential OAuth 2 client (client_secret_post), optionally with PKCE (S256).

    `on_error(status, body, headers)` classifies a refused token request; transport
    failures are Transient.
    """

    client_id: str
    client_secret: str
    redirect_uri: str
    endpoints: dict[str, str]  # authorize, token, revoke (optional): URL templates
    on_error: Callable[[int, Any, dict], CrmError]
    scope: str = ""
    authorize_params: dict = field(default_factory=dict)  # e.g. HubSpot's optional_scope
    pkce: bool = False
    ca_bundle: str | None = None
    timeout: float | tuple = 30.0

    def url(self, name: str, **where) -> str:
        return self.endpoints[name].format(**where).rstrip("/")

    def _session(self) -> OAuth2Session:
        s = OAuth2Session(self.client_id, self.client_secret, redirect_uri=self.redirect_uri,
                          code_challenge_method="S256" if self.pkce else None,
                          token_endpoint_auth_method="client_secret_post")
        if self.ca_bundle:
            s.verify, s.trust_env = self.ca_bundle, False

        def check(response):
            if response.status_code >= 400:
                raise self.on_error(response.status_code, _body(response), dict(response.headers))
            return response

        s.register_compliance_hook("access_token_response", check)
        s.register_compliance_hook("refresh_token_response", check)
        return s

    def authorization_url(self, state: str, code_verifier: str | None = None, **where) -> str:
        extra = {"scope": self.scope} if self.scope else {}
        if self.pkce:
            extra["code_verifier"] = code_verifier
        with self._session() as s:
            url, _ = s.create_authorization_url(self.url("authorize", **where), state=state,
                                                **extra, **self.authorize_params)
        return url

    def _token(self, call: Callable[[OAuth2Session], Any]) -> dict:
        try:
            with self._session() as s:
                answer = call(s)
                if isinstance(answer, requests.Response):  # introspection: no compliance hook
                    if answer.status_code >= 400:
                        raise self.on_error(answer.status_code, _body(answer), dict(answer.headers))
                    answer = answer.json()
                    if not isinstance(answer, dict):
                        raise ValueError("not a JSON object")  # noqa: TRY004 (nonsense, as below)
                return dict(answer)
        except CrmError:
            raise
        except OAuthError as exc:  # an error answered with 200 (never seen, but possible)
            raise self.on_error(400, {"error": exc.error, "error_description": exc.description},
                                {}) from exc
        except requests.HTTPError as exc:  # 5xx, or a non-JSON answer
            status = exc.response.status_code if exc.response is not None else None
            raise Transient(f"token endpoint answered {status}", status=status) from exc
        except (requests.RequestException, OSError) as exc:
            raise Transient(f"token endpoint unreachable: {exc.__class__.__name__}") from exc
        except ValueError as exc:
            raise Rejected(f"token endpoint answered nonsense: {exc}") from exc

    def exchange(self, code: str, code_verifier: str | None = None, **where) -> dict:
        """Code -> token response (sends code_verifier too when PKCE is on)."""
        extra = {"code_verifier": code_verifier} if self.pkce else {}
        return self._token(lambda s: s.fetch_token(
            self.url("token", **where), code=code, grant_type="authorization_code",
            redirect_uri=self.redirect_uri, timeout=self.timeout, **extra))

    def refresh(self, refresh_token: str, **where) -> dict:
        """The refresh grant; the answer keeps the old refresh token when none was rotated in."""
        return self._token(lambda s: s.refresh_token(
            self.url("token", **where), refresh_token=refresh_token, timeout=self.timeout))

    def introspect(self, token: str, token_type_hint: str = "access_token", **where) -> dict:
        """What the authorization server knows of a token (RFC 7662; the CRM may add fields,
        e.g. HubSpot's hub_id and user_id). The token goes in the form body, never the URL."""
        return self._token(lambda s: s.introspect_token(
            self.url("introspect", **where), token=token, token_type_hint=token_type_hint,
            timeout=self.timeout))

    def revoke(self, token: str, **where) -> bool:
        """Revoke a (refresh) token. True when the CRM confirmed it; never raises."""
        if "revoke" not in self.endpoints:
            return False
        try:
            with self._session() as s:
                response = s.revoke_token(self.url("revoke", **where), token=token,
                                          timeout=self.timeout)
            return response.status_code == 200
        except (requests.RequestException, OSError):
            return False
