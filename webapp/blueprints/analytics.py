"""The analytics page (`/analytics`, signed-in people), its CSV downloads, and the same
figures as JSON under `/api/v1/analytics/...` (API keys). The SQL is webapp/analytics.py;
the charts are SVG drawn here on the server (templates/analytics/), so the page runs no
script at all and lives under the strict page CSP (webapp/security.py)."""
from __future__ import annotations

from flask import Blueprint, Response, abort, g, render_template, request
from pydantic import BaseModel
from sqlalchemy import select

from .. import analytics, openapi
from ..auth import api_key_required, login_required
from ..db import session
from ..errors import Invalid
from ..models import Mirror, Plan, User
from ..web import render

bp = Blueprint("analytics", __name__)
api_bp = Blueprint("analytics_api", __name__, url_prefix="/api/v1")

TITLES = {
    "funnel": "Plans by furthest milestone reached",
    "win-rates": "Win rate by furthest milestone reached",
    "durations": "Days per milestone and per stage (median, p75)",
    "slips": "Slip days by milestone: the bottlenecks",
    "engagement": "Buyer engagement against outcome",
}


def _filters(tenant_id: str, owner_forced: str | None) -> analytics.Filters:
    """Filters from the query string; unknown values are refused (422), never ignored."""
    args = request.args
    period = args.get("period", "all")
    if period not in analytics.PERIODS:
        raise Invalid("period", f"one of {', '.join(analytics.PERIODS)}")
    template = args.get("template") or None
    if template and template not in ("enterprise", "quick"):
        raise Invalid("template", "enterprise or quick")
    pipeline = (args.get("pipeline") or "")[:64] or None
    owner = owner_forced or (args.get("owner") or "")[:36] or None
    return analytics.Filters(tenant_id, owner_id=owner, pipeline=pipeline, template=template,
                             period_days=analytics.PERIODS[period])


def _user_filters() -> analytics.Filters:
    return _filters(g.user.tenant_id, None if g.user.role == "admin" else g.user.id)


# ---- the page ------------------------------------------------------------------------------


@bp.get("/analytics")
@login_required
def page():
    s = session()
    f = _user_filters()
    data = {chart: analytics.figures(s, f, chart) for chart in analytics.CHARTS
            if chart != "funnel"}
    owners = s.execute(select(User.id, User.name, User.email)
                       .where(User.tenant_id == g.user.tenant_id)
                       .order_by(User.name)).all() if g.user.role == "admin" else []
    pipelines = [p for (p,) in s.execute(
        select(Mirror.deal_pipeline).join(Plan, Plan.id == Mirror.plan_id)
        .where(Plan.tenant_id == g.user.tenant_id, Mirror.deal_pipeline.is_not(None))
        .distinct().order_by(Mirror.deal_pipeline))]
    return render_template("analytics/page.html", user=g.user, f=f, data=data, TITLES=TITLES,
                           owners=owners, pipelines=pipelines, args=request.args,
                           periods=analytics.PERIODS, query=request.query_string.decode())


@bp.get("/analytics/<chart>.csv")
@login_required
def download(chart):
    if chart not in analytics.CHARTS:
        abort(404)
    data = analytics.figures(session(), _user_filters(), chart)
    body = analytics.to_csv(analytics.csv_rows(chart, data))
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="mutualplan-{chart}.csv"'})


# ---- the API -------------------------------------------------------------------------------


class WinRateRow(BaseModel):
    title: str
    reached: int
    won: int
    lost: int
    open: int
    win_rate: float | None


class WinRates(BaseModel):
    plans: int
    won: int
    lost: int
    open: int
    baseline_win_rate: float | None
    milestones: list[WinRateRow]


class FunnelRow(BaseModel):
    title: str
    reached: int


class Funnel(BaseModel):
    plans: int
    milestones: list[FunnelRow]


class MilestoneDuration(BaseModel):
    title: str
    plans: int
    median_days: float | None
    p75_days: float | None


class StageDuration(BaseModel):
    stage: str
    plans: int
    median_days: float | None
    p75_days: float | None


class Durations(BaseModel):
    milestones: list[MilestoneDuration]
    stages: list[StageDuration]


class SlipRow(BaseModel):
    title: str
    slips: int
    plans: int
    slip_days: int
    days_per_plan: float


class Slips(BaseModel):
    milestones: list[SlipRow]


class EngagementRow(BaseModel):
    touches: str
    plans: int
    won: int
    lost: int
    open: int
    win_rate: float | None


class Engagement(BaseModel):
    buckets: list[EngagementRow]


class ForecastRow(BaseModel):
    plan_id: str
    furthest: str | None
    win_probability: float
    reached: int
    won: int
    p_stage: float


class Forecast(BaseModel):
    min_sample: int
    plans: list[ForecastRow]


MODELS = {"funnel": Funnel, "win-rates": WinRates, "durations": Durations, "slips": Slips,
          "engagement": Engagement}


def _api_view(chart: str):
    def view():
        f = _filters(g.principal.tenant_id, None)
        return render(MODELS[chart], analytics.figures(session(), f, chart))
    view.__name__ = f"api_{chart.replace('-', '_')}"
    return api_key_required(view)


for _chart in analytics.CHARTS:
    api_bp.add_url_rule(f"/analytics/{_chart}", view_func=_api_view(_chart), methods=["GET"])


@api_bp.get("/analytics/forecast")
@api_key_required
def api_forecast():
    """Every open plan's milestone-based win probability."""
    rows = analytics.forecast(session(), g.principal.tenant_id, open_only=True)
    return render(Forecast, {"min_sample": analytics.MIN_SAMPLE, "plans": [
        {"plan_id": p, **{k: v for k, v in r.items() if k != "outcome"}}
        for p, r in rows.items()]})


FILTER_PARAMS = [
    {"name": "pipeline", "in": "query", "schema": {"type": "string"},
     "description": "The deal pipeline (as the CRM names it)"},
    {"name": "owner", "in": "query", "schema": {"type": "string"}, "description": "A user id"},
    {"name": "template", "in": "query", "schema": {"enum": ["enterprise", "quick"]}},
    {"name": "period", "in": "query", "schema": {"enum": list(analytics.PERIODS)},
     "description": "Plans created in the last 30, 90 or 365 days, or all"},
]
openapi.EXTRA_OPERATIONS.extend(
    ("get", f"/analytics/{chart}", TITLES[chart] + " (closed won/lost from the CRM stage)",
     None, 200, MODELS[chart]) for chart in analytics.CHARTS)
openapi.EXTRA_OPERATIONS.append(
    ("get", "/analytics/forecast",
     (f"Open plans' win probability: (won + {analytics.MIN_SAMPLE}·p_stage) / (reached + "
      f"{analytics.MIN_SAMPLE}) over the tenant's closed plans that reached the same milestone"),
     None, 200, Forecast))
openapi.EXTRA_PARAMS.update({f"/analytics/{chart}": FILTER_PARAMS for chart in analytics.CHARTS})
