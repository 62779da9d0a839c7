"""The rep's home (`/app`): the plans a rep owns, for admins every plan of the tenant
(webapp/dashboard.py). Filters, sort and search are a plain GET form: a filtered view is a
link that can be bookmarked or shared with a colleague."""
from __future__ import annotations

from flask import Blueprint, g, render_template, request

from .. import analytics, dashboard
from ..auth import login_required
from ..db import session
from ..web import today

bp = Blueprint("workspace", __name__)


@bp.get("/app")
@login_required
def home():
    day = today()
    filters = {f for f in request.args.getlist("filter") if f in dashboard.FILTERS}
    sort = request.args.get("sort", "next_due")
    sort = sort if sort in dashboard.SORTS else "next_due"
    q = (request.args.get("q") or "")[:100]
    rows = dashboard.rows_for(session(), g.user, day)
    matching = dashboard.view(rows, day, filters=filters, sort=sort, q=q)
    more = request.args.get("all") == "1"
    shown = matching if more else matching[:dashboard.PAGE]
    # Plan health (webapp/analytics.py): three grouped queries for the rows shown.
    health = analytics.health_by_plan(session(), g.user.tenant_id, [r.id for r in shown], day)
    return render_template("workspace/home.html", user=g.user, rows=shown, total=len(rows),
                           health=health, HEALTH=analytics.HEALTH,
                           matching=len(matching), more=more,
                           filters=filters, sort=sort, q=q, day=day,
                           FILTERS=dashboard.FILTERS, SORTS=dashboard.SORTS)
