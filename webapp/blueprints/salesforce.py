"""Salesforce's own routes: disconnect.

Connect (OAuth with PKCE), the bootstrap job and the adaptive poll are the same shape for
every CRM: blueprints/connect.py, webapp/providers.py (SALESFORCE: login hosts, package
check, `poll_interval`) and jobs.py (setup, pull, the clock).
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify
from sqlalchemy import select

from connector.salesforce import PRODUCTION_LOGIN

from .. import installations, providers
from ..auth import api_key_required
from ..db import session
from ..errors import NotFound as NotFoundProblem
from ..models import Installation

bp = Blueprint("salesforce", __name__)
PROVIDER = "salesforce"


@bp.post("/salesforce/disconnect")
@api_key_required
def disconnect():
    """Revoke the org's refresh token at Salesforce and mark the installation uninstalled."""
    s = session()
    row = s.scalars(select(Installation).where(Installation.tenant_id == g.principal.tenant_id,
                                               Installation.provider == PROVIDER)).first()
    if row is None:
        raise NotFoundProblem("No Salesforce org is connected.")
    tokens = installations.tokens_of(row)
    revoked = False
    if tokens is not None:
        revoked = providers.get(PROVIDER).oauth().revoke(
            tokens.refresh_token or tokens.access_token,
            base=tokens.extra.get("instance_url") or PRODUCTION_LOGIN)
    installations.uninstall(s, row, "disconnected by an admin")
    s.commit()
    return jsonify(status="disconnected", revoked=revoked)
