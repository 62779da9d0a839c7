"""Local-mode only (`make run` against the HubSpot sandbox): the "try it" shortcut.

There is no HubSpot deal page locally to host the card, so POST /hubspot/sandbox/try
stands in for "open a deal, pick the Mutual Action Plan tab, create a plan": it puts a
plan on the portal's first deal without one and opens the editor. Registered by
create_app only when HUBSPOT_API_BASE points at this machine.

It changes something, so it takes a CSRF token like every other form: the installed
page (blueprints/connect.py) sets a per-browser nonce cookie and puts the HMAC of it in
the form (sharing.csrf_token); a post without the pair is refused and creates nothing.
"""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, request
from hubspot import HubSpot
from sqlalchemy import select
from urllib3.util.retry import Retry

from . import installations, plans, providers, sharing
from .blueprints.connect import render_failure
from .db import session
from .models import Plan
from .schemas import DealRef, PlanCreate
from .web import keys, today

bp = Blueprint("localdemo", __name__)
CSRF_COOKIE = "mp_demo"
CSRF_SCOPE = "sandbox-try"


def issue_csrf(response) -> str:
    """Set this browser's nonce cookie on `response`; the token for the form."""
    nonce = secrets.token_urlsafe(24)
    response.set_cookie(CSRF_COOKIE, nonce, max_age=3600, httponly=True, samesite="Strict",
                        path="/hubspot/sandbox/")
    return sharing.csrf_token(nonce, CSRF_SCOPE, keys())


def sandbox_url(config) -> str | None:
    """The HubSpot sandbox's address when the app talks to one on this machine, else None."""
    base = config.get("HUBSPOT_API_BASE") or ""
    return base.rstrip("/") if urlsplit(base).hostname in ("127.0.0.1", "localhost") else None


def _deals(row) -> list[tuple[str, str]]:
    """(id, name) of the portal's first deals, read with the SDK itself."""
    provider = providers.get("hubspot")
    provider.connector_for(row).keep_alive()  # a fresh token
    token = installations.tokens_of(session().get(type(row), row.id)).access_token
    config = providers.hubspot_config()
    sdk = HubSpot(access_token=token, host=config.api_base.rstrip("/"), retry=Retry(total=0),
                  **({"ssl_ca_cert": config.ca_bundle} if config.ca_bundle else {}))
    page = sdk.crm.deals.basic_api.get_page(limit=20, properties=["dealname"])
    return [(d.id, (d.properties or {}).get("dealname") or f"Deal {d.id}") for d in page.results]


@bp.post("/hubspot/sandbox/try")
def try_it():
    provider = providers.get("hubspot")
    if sandbox_url(current_app.config) is None:
        return render_failure(provider, "not_sandbox", status=404,
                              message="This shortcut exists only with the local HubSpot sandbox.")
    if not sharing.csrf_ok(request.cookies.get(CSRF_COOKIE), CSRF_SCOPE,
                           request.form.get("csrf"), keys()):
        return render_failure(provider, "csrf", status=403,
                              message="This form has expired or came from another site. Open the "
                                      "connected page again and use its button.")
    s = session()
    row = installations.find(s, "hubspot", request.form.get("portal_id", ""))
    if row is None or row.status != "active":
        return render_failure(provider, "unknown_portal", status=404,
                              message="Install the app in this sandbox portal first.")
    taken = set(s.scalars(select(Plan.deal_id).where(Plan.tenant_id == row.tenant_id)))
    free = [(deal_id, name) for deal_id, name in _deals(row) if deal_id not in taken]
    if not free:
        return render_failure(provider, "no_free_deal", status=409,
                              message="Every sandbox deal already has a plan; open one from the "
                                      "editor link.")
    deal_id, name = free[0]
    plan = plans.create_plan(s, row.tenant_id, PlanCreate(
        title=f"{name}: mutual action plan", template="enterprise",
        deal=DealRef(provider="hubspot", account_id=row.account_id, deal_id=deal_id)),
        "sandbox-demo", today())
    s.commit()
    url, _ = sharing.editor_link(row.tenant_id, plan.id, "sandbox-demo", keys())
    return redirect(url)
