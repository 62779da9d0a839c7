"""The rep's home (`/app`): the plans a rep owns, for admins every plan of the tenant."""
from __future__ import annotations

from flask import Blueprint, g, render_template

from ..auth import login_required

bp = Blueprint("workspace", __name__)


@bp.get("/app")
@login_required
def home():
    return render_template("workspace/home.html", user=g.user)
