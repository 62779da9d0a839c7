"""Signing in and out (issue 12): the sign-in page and the end of a session.

The sign-in flows themselves ("Sign in with HubSpot", "Sign in with Salesforce") go
through each CRM's OAuth client (webapp/providers.py); the session is webapp/users.py.
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from .. import users
from ..auth import Forbidden, safe_next

bp = Blueprint("account", __name__)


@bp.get("/login")
def login():
    target = safe_next(request.args.get("next"))
    if users.current_user() is not None:
        return redirect(target)
    return render_template("account/login.html", next=target,
                           error=request.args.get("error", "")[:200])


@bp.post("/logout")
def logout():
    if users.current_session() is not None and not users.csrf_ok(request.form.get("csrf")):
        raise Forbidden("This sign-out form was out of date; reload the page and try again.")
    return users.sign_out(redirect(url_for("account.login"), code=303))
