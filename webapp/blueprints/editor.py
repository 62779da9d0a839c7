"""The rep editor: a server-rendered page per plan, progressively enhanced.

Opened through a signed, 15-minute, single-use link (`sharing.editor_link`, from
the CRM card or POST /api/v1/plans/{id}/editor-link): opening it spends the link
and starts a server-side editor session (webapp/users.py) whose cookie is scoped
to that plan's path, so several plans can be open at once. Revoking the API key
that minted the link, or "Sign out everywhere" on the plan, ends the session. A
signed-in user (/login) opens the plans they own (admins: every plan) without a
link. The page may be framed by the CRMs only (CSP frame-ancestors); over https
the cookie is `SameSite=None; Secure; Partitioned` so that it works inside the
HubSpot / Salesforce iframe, over plain http (local) it is `SameSite=Lax`.

Every change is one form POST to /editor/plans/<id>/do with an `op` field,
handled by the same domain commands as the API (plans.py, sharing.py), then a
redirect back (POST/redirect/GET). Refusals re-render the page with the reason.
"""
from __future__ import annotations

import base64
import re
from datetime import date, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from connector.base import PipelineStage

from .. import (
    access,
    clock,
    mirror,
    notifications,
    outbox,
    plan_templates,
    plans,
    providers,
    security,
    sharing,
    spreadsheets,
    sync,
    users,
)
from ..auth import api_key_required
from ..db import session
from ..errors import (
    DomainError,
    Invalid,
    NotFound,
    ProblemError,
    Unauthorized,
    VersionConflict,
    describe,
)
from ..models import Activity, Milestone, Mirror, Stage
from ..schemas import (
    Constraints,
    DatedConstraint,
    EditorLinkOut,
    MilestoneIn,
    MilestonePatch,
    Objectives,
    PlanPatch,
    Resource,
    StageIn,
    StagePatch,
    StakeholderIn,
    StakeholderPatch,
)
from ..web import keys, render, today
from .buyer import build_view, fmt_date

bp = Blueprint("editor", __name__, url_prefix="/editor")
api_bp = Blueprint("editor_api", __name__, url_prefix="/api/v1")

FRAME_ANCESTORS = ("'self' https://app.hubspot.com https://app-eu1.hubspot.com https://*.hubspot.com "
                   "https://*.lightning.force.com https://*.my.salesforce.com")
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       f"form-action 'self'; base-uri 'none'; frame-ancestors {FRAME_ANCESTORS}")

MESSAGES = {
    "saved": "Saved.", "stage": "Stage saved.", "stage-deleted": "Stage deleted.",
    "milestone": "Milestone saved.", "milestone-deleted": "Milestone deleted.",
    "person": "Stakeholder saved.", "person-deleted": "Stakeholder removed.",
    "template": "Template applied: its stages and milestones were added at the end.",
    "accepted": "Proposal accepted; the due date moved and the slip ledger has the reason.",
    "declined": "Proposal declined.", "comment": "Comment added.", "note": "Internal note added.",
    "link": "Buyer link created. Copy it from the list below.", "revoked": "Buyer link revoked.",
    "imported": "Spreadsheet imported: its milestones were added to the plan.",
    "access": "Saved who may open the link.", "reminders": "Reminder settings saved.",
}


def _message(code: str) -> str | None:
    """The notice for ?ok=<code>; "reminders-N" comes back from the Send reminder form."""
    if code.startswith("reminders-") and code[len("reminders-"):].isascii() \
            and code[len("reminders-"):].isdigit():
        sent = int(code[len("reminders-"):])
        return f"Reminder sent to {sent} buyer{'s' if sent != 1 else ''}." if sent else \
            "No reminder sent: nobody on the buyer side has an open step with an e-mail, " \
            "or they were reminded in the last hour."
    return MESSAGES.get(code)


@bp.after_request
def _editor_headers(response: Response) -> Response:
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["Referrer-Policy"] = "same-origin"
    h["X-Robots-Tag"] = "noindex, nofollow"
    h["Cache-Control"] = "no-store"
    h["X-Content-Type-Options"] = "nosniff"
    return response


@bp.errorhandler(Unauthorized)
@bp.errorhandler(NotFound)
def _closed(exc):
    return render_template("editor/closed.html", detail=exc.detail), describe(exc).status


def _secure() -> bool:
    return keys().base_url.startswith("https://")


# ---- opening --------------------------------------------------------------------


@bp.get("/open/<token>")
def open_link(token):
    data = sharing.load_editor_link(token, keys())
    if data is None:
        raise Unauthorized("This editor link has expired or is not valid. Open the plan again from "
                           "your CRM to get a fresh one.")
    s = session()
    plans.get_plan(s, data["t"], data["p"], full=False)  # 404 when gone
    try:
        _row, cookie = users.open_editor_link(s, token, data)
        s.commit()
    except (users.LinkAlreadyUsed, IntegrityError):  # IntegrityError: a concurrent first use
        s.rollback()
        return render_template("editor/closed.html", detail=USED), 410
    landing = "content_editor.editor_page" if data.get("to") == "content" else "editor.page"
    response = redirect(url_for(landing, plan_id=data["p"]), code=303)
    response.set_cookie(users.EDITOR_COOKIE, cookie, **users.session_cookie_kwargs(
        embedded=True, path=f"/editor/plans/{data['p']}", max_age=users.EDITOR_TTL))
    return response


USED = ("This editor link was already used. Editor links open once, so that a copied link "
        "is worthless: open the plan again from your CRM (or sign in) to get a fresh one.")
ENDED = "Your editor session has ended. Open the plan again from your CRM."


def _session_for(plan_id: str) -> dict:
    """The editor session for this plan: the plan's editor cookie (from a link), else the
    signed-in user's session when the plan is theirs or they are an admin."""
    s = session()
    row = users.editor_session(s, request.cookies.get(users.EDITOR_COOKIE), plan_id)
    if row is None:
        row = users.current_session()
        if row is None or not users.may_edit(s, row.user, plan_id):
            raise Unauthorized(ENDED)
    users.touch_session(row)
    return {"t": row.tenant_id, "p": plan_id, "a": row.actor, "n": row.id, "s": row.id,
            "u": row.user_id}


def _origin_ok() -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    base = urlsplit(keys().base_url)
    return origin.rstrip("/") in {request.host_url.rstrip("/"), f"{base.scheme}://{base.netloc}"}


# ---- the CRM panel ------------------------------------------------------------------


def crm_panel(s, plan) -> dict | None:
    """The deal this plan belongs to, from our database only (no CRM call on a page view):
    its name and stage label, a link to it, which milestones move which stage, sync status
    and what to do about a mismatch."""
    if not plan.deal_id:
        return None
    installation = outbox.installation_for(s, plan)
    state = s.get(Mirror, plan.id)
    status = sync.status(s, plan)
    provider = providers.get(plan.deal_provider) if installation else None
    pipeline = (state and state.deal_pipeline) or (installation and (installation.settings or {})
                                                   .get("default_pipeline")) or "default"
    cached = ((installation.settings or {}).get("pipelines", {}) if installation else {}).get(pipeline, [])
    stages = [PipelineStage(**st) for st in cached]
    labels = {st.id: st.label for st in stages}
    gates = []
    if installation is not None:
        mapping = sync.stage_map(s, installation, pipeline, stages)
        rank = {st.id: i for i, st in enumerate(stages)}
        for m in plan.milestones:
            stage = mapping.gates.get(mirror.key(m.title))
            if stage is not None:
                gates.append({"milestone": m, "stage": labels.get(stage, stage),
                              "rank": rank.get(stage, len(rank)),
                              "close": mirror.key(m.title) in mapping.close_milestones})
        gates.sort(key=lambda g: (g["rank"], g["milestone"].position))
    stage = state.deal_stage if state else None
    return {
        "provider": provider.label if provider else plan.deal_provider,
        "name": plan.deal_name or f"Deal {plan.deal_id}", "deal_id": plan.deal_id,
        "url": provider.record_url(installation, plan.deal_id) if provider else None,
        "stage": labels.get(stage, stage) if stage else None,
        "gates": gates, "status": status,
        "advice": mirror.advice(status["mismatch"], labels),
    }


# ---- the page -------------------------------------------------------------------


class Posted:
    """The rejected form, so the page shows what was typed and the message beside its field.

    Only the form that was sent (same `op`, same milestone/stage/stakeholder) gets the
    typed values back; every other form on the page shows the stored ones.
    """

    IDS = ("milestone_id", "stage_id", "stakeholder_id", "link_id")

    def __init__(self, form=None, errors=None):
        self.form = dict(form or {})
        self.lists = {k: form.getlist(k) for k in form} if hasattr(form, "getlist") else {}
        self.errors = dict(errors or {})

    def mine(self, op: str, ident: str | None = None) -> bool:
        if self.form.get("op") != op:
            return False
        return ident is None or any(self.form.get(k) == ident for k in self.IDS)

    def value(self, op, name, default, ident=None):
        return self.form.get(name, "") if self.mine(op, ident) else default

    def values(self, op, name, default, ident=None) -> list:
        """A multiple choice's values (e.g. the prerequisites picked)."""
        return self.lists.get(name, []) if self.mine(op, ident) else list(default)

    def checked(self, op, name, default, ident=None) -> bool:
        return self.form.get(name) == "1" if self.mine(op, ident) else bool(default)

    def error(self, op, name, ident=None) -> str | None:
        return self.errors.get(name) if self.mine(op, ident) else None

    def open(self, op, ident=None) -> bool:
        return bool(self.form) and self.mine(op, ident)


def _render(ed: dict, *, status=200, error=None, ok=None, posted: Posted | None = None):
    s = session()
    plan = plans.get_plan(s, ed["t"], ed["p"])
    view = build_view(s, plan, include_internal=True, day=today())
    signing = keys()
    rows = sharing.list_links(s, plan)
    verified = access.verified_people(s, [link.id for link in rows])
    links = [{"row": link, "url": sharing.link_url(link, signing), "active": sharing.is_active(link),
              "verified": verified.get(link.id, [])} for link in rows]
    titles = {m.id: m.title for m in plan.milestones}
    slip_rows = plans.slips(s, plan)
    activity = plans.activity(s, plan, limit=60)
    html = render_template(
        "editor/plan.html", v=view, plan=plan, links=links, slips=slip_rows, titles=titles,
        activity=activity, csrf=sharing.csrf_token(ed["n"], plan.id, signing),
        actor=ed["a"], ok=ok, error=error, fmt=fmt_date, posted=posted or Posted(),
        crm=crm_panel(s, plan), templates=plan_templates.summaries(s, plan.tenant_id),
        stages=[sv["stage"] for sv in view["stages"]], access_modes=access.MODE_LABELS,
        reminders=notifications.plan_settings(s, plan),
        buyer_events=[a for a in activity if a.actor.startswith("buyer:")],
        slip_count=sum(1 for r in slip_rows if r.old_date and r.new_date and r.new_date > r.old_date))
    return Response(html, status=status, mimetype="text/html")


@bp.get("/plans/<plan_id>")
def page(plan_id):
    ed = _session_for(plan_id)
    return _render(ed, ok=_message(request.args.get("ok", "")))


# ---- form parsing -----------------------------------------------------------------

_OWNER = re.compile(r"^\s*(?P<name>[^<]*?)\s*(?:<(?P<email>[^>]*)>)?\s*$")


def _text(name: str, limit: int = 10_000) -> str:
    value = (request.form.get(name) or "").strip()
    if len(value) > limit:
        raise Invalid(name, f"at most {limit} characters")
    return value


def _lines(name: str) -> list[str]:
    return [line.strip() for line in _text(name, 50_000).splitlines() if line.strip()]


def _pairs(name: str) -> list[tuple[str, str]]:
    out = []
    for line in _lines(name):
        if "|" not in line:
            raise Invalid(name, f"“{line[:40]}”: write it as “title | value”")
        left, right = line.rsplit("|", 1)
        out.append((left.strip(), right.strip()))
    return out


def _date(name: str) -> date | None:
    raw = _text(name, 10)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Invalid(name, "use a date like 2026-12-31") from None


def _int(name: str) -> int | None:
    raw = _text(name, 12)
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _owners(name: str) -> list[dict]:
    owners = []
    for line in _lines(name):
        match = _OWNER.match(line)
        owners.append({"name": (match and match["name"]) or "", "email": (match and match["email"] or "").strip()})
    return owners


def _milestone(s, plan, mid) -> Milestone:
    m = plans.get_milestone(s, plan.tenant_id, mid)
    if m.plan_id != plan.id:
        raise NotFound("No milestone with this id in this plan.")
    return m


def _stage(s, plan, sid) -> Stage:
    st = plans.get_stage(s, plan.tenant_id, sid)
    if st.plan_id != plan.id:
        raise NotFound("No stage with this id in this plan.")
    return st


def plain(message: str) -> str:
    """A pydantic message in the words a rep would use."""
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if message.startswith("String should have at most"):
        return message.replace("String should have", "write").replace("characters", "characters or fewer")
    if message.startswith("String should have at least"):
        return "this cannot be empty"
    if message.startswith("List should have at most"):
        return message.replace("List should have", "keep it to").replace("items after validation, not", "lines, not")
    if "valid date" in message:
        return "use a date like 2026-12-31"
    if message.startswith("Input should be"):
        return "choose " + message.removeprefix("Input should be ").replace("'", "“", 1).replace("'", "”", 1)
    return message[:1].lower() + message[1:]


def _valid(field: str, model, data, line: str | None = None):
    """Validate one form field's part; a refusal names that field, in plain words."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = plain(exc.errors(include_url=False)[0]["msg"])
        if line is not None:
            message = f"“{line[:60]}”: {message}"
        raise Invalid(field, message) from None


# ---- operations --------------------------------------------------------------------


def op_plan(s, plan, actor):
    _valid("budget", Constraints, {"budget": _text("budget", 200) or None})
    dates = [_valid("dates", DatedConstraint, {"label": label, "date": value}, f"{label} | {value}")
             for label, value in _pairs("dates")]
    constraints = _valid("dates", Constraints, {
        "budget": _text("budget", 200) or None, "go_live_date": _date("go_live_date"), "dates": dates})
    objectives = {k: _valid(k, Objectives, {k: _lines(k)}) for k in ("challenges", "ideal_results", "deliverables")}
    resources = [_valid("resources", Resource, {"title": t, "url": u}, f"{t} | {u}")
                 for t, u in _pairs("resources")]
    _valid("title", PlanPatch, {"title": _text("title", 200)})
    _valid("value_summary", PlanPatch, {"value_summary": _text("value_summary")})
    patch = PlanPatch.model_validate({
        "title": _text("title", 200), "value_summary": _text("value_summary"),
        "objectives": Objectives.model_validate({k: getattr(v, k) for k, v in objectives.items()}),
        "constraints": constraints, "resources": resources,
        "start_date": _date("start_date"), "version": _int("version")})
    plans.update_plan(s, plan, patch, actor)
    return "saved", "details"


def op_stage_add(s, plan, actor):
    stage = plans.add_stage(s, plan, StageIn(name=_text("name", 200)), actor)
    return "stage", f"s-{stage.id}"


def op_stage_rename(s, plan, actor):
    st = _stage(s, plan, _text("stage_id", 36))
    plans.update_stage(s, st, StagePatch(name=_text("name", 200)), actor)
    return "stage", f"s-{st.id}"


def op_stage_move(s, plan, actor):
    st = _stage(s, plan, _text("stage_id", 36))
    delta = -1 if request.form.get("dir") == "up" else 1
    plans.update_stage(s, st, StagePatch(position=max(st.position + delta, 0)), actor)
    return "stage", f"s-{st.id}"


def op_stage_delete(s, plan, actor):
    plans.delete_stage(s, _stage(s, plan, _text("stage_id", 36)), actor)
    return "stage-deleted", "milestones"


def op_milestone_add(s, plan, actor):
    data = MilestoneIn.model_validate({
        "stage_id": _text("stage_id", 36), "title": _text("title", 200),
        "owner_side": _text("owner_side", 10) or "seller", "due_date": _date("due_date"),
        "internal": request.form.get("internal") == "1"})
    m = plans.add_milestone(s, plan, data, actor)
    return "milestone", f"m-{m.id}"


def op_milestone_edit(s, plan, actor):
    m = _milestone(s, plan, _text("milestone_id", 36))
    due = _date("due_date")
    fields = {
        "title": _text("title", 200), "description": _text("description"),
        "owner_side": _text("owner_side", 10), "owners": _owners("owners"), "due_date": due,
        "status": _text("status", 20), "risk": _text("risk", 20),
        "internal": request.form.get("internal") == "1", "version": _int("version"),
    }
    if due != m.due_date and _text("reason", 1000):
        fields["reason"] = _text("reason", 1000)
    if _text("stage_id", 36) and _text("stage_id", 36) != m.stage_id:
        fields["stage_id"] = _text("stage_id", 36)
    if request.form.get("dependencies") == "1":  # the form shows them (not every form does)
        fields["depends_on"] = _dependencies(m)
    plans.update_milestone(s, m, MilestonePatch.model_validate(fields), actor)
    return "milestone", f"m-{m.id}"


def _dependencies(m: Milestone) -> list[dict]:
    """The prerequisites picked, with one offset for all of them; a prerequisite kept with
    the same offset keeps its own (dependencies set per prerequisite through the API stay)."""
    raw = _text("dep_days", 6) or "0"
    try:
        days = int(raw)
    except ValueError:
        raise Invalid("dep_days", "a whole number of days, e.g. 3 (or -2 for two days before)") from None
    if not -365 <= days <= 3650:
        raise Invalid("dep_days", "between -365 and 3650 days")
    after = "due" if request.form.get("dep_after") == "due" else "done"
    stored = {d["milestone_id"]: d for d in m.depends_on or []}
    first = next(iter(stored.values()), None)
    same = first is not None and (first["days"], first["after"]) == (days, after)
    return [stored[i] if same and i in stored else {"milestone_id": i, "days": days, "after": after}
            for i in dict.fromkeys(request.form.getlist("depends_on")) if i]


def op_milestone_done(s, plan, actor):
    """One click: done, or back to in progress (the status a reopened milestone is in)."""
    m = _milestone(s, plan, _text("milestone_id", 36))
    status = "done" if request.form.get("done") == "1" else "in_progress"
    plans.update_milestone(s, m, MilestonePatch(status=status, version=_int("version")), actor)
    return "milestone", f"m-{m.id}"


def op_milestone_move(s, plan, actor):
    m = _milestone(s, plan, _text("milestone_id", 36))
    ordered = [st for st in sorted(plan.stages, key=lambda x: x.position)]
    siblings = sorted(m.stage.milestones, key=lambda x: x.position)
    up = request.form.get("dir") == "up"
    index = siblings.index(m)
    if up and index == 0 or not up and index == len(siblings) - 1:
        # At the edge of its stage: move into the previous / next stage.
        si = ordered.index(m.stage) + (-1 if up else 1)
        if 0 <= si < len(ordered):
            target = ordered[si]
            position = len(target.milestones) if up else 0
            plans.update_milestone(s, m, MilestonePatch(stage_id=target.id, position=position), actor)
        return "milestone", f"m-{m.id}"
    plans.update_milestone(s, m, MilestonePatch(position=index + (-1 if up else 1)), actor)
    return "milestone", f"m-{m.id}"


def op_milestone_delete(s, plan, actor):
    plans.delete_milestone(s, _milestone(s, plan, _text("milestone_id", 36)), actor)
    return "milestone-deleted", "milestones"


def _person_fields() -> dict:
    return {"name": _text("name", 200), "title": _text("title", 200), "email": _text("email", 254),
            "side": _text("side", 10), "role": _text("role", 20) or "other"}


def op_person_add(s, plan, actor):
    plans.add_stakeholder(s, plan, StakeholderIn.model_validate(_person_fields()), actor)
    return "person", "people"


def op_person_edit(s, plan, actor):
    person = plans.get_stakeholder(s, plan.tenant_id, _text("stakeholder_id", 36))
    if person.plan_id != plan.id:
        raise NotFound("No stakeholder with this id in this plan.")
    plans.update_stakeholder(s, person, StakeholderPatch.model_validate(_person_fields()), actor)
    return "person", "people"


def op_person_delete(s, plan, actor):
    person = plans.get_stakeholder(s, plan.tenant_id, _text("stakeholder_id", 36))
    if person.plan_id != plan.id:
        raise NotFound("No stakeholder with this id in this plan.")
    plans.delete_stakeholder(s, person, actor)
    return "person-deleted", "people"


def op_template(s, plan, actor):
    plans.apply_template(s, plan, _text("template", 40), actor, today())
    return "template", "milestones"


def op_decide(s, plan, actor):
    proposal = sharing.get_proposal(s, plan.tenant_id, _text("proposal_id", 36))
    if proposal.plan_id != plan.id:
        raise NotFound("No proposal with this id in this plan.")
    accept = request.form.get("decision") == "accept"
    sharing.decide_proposal(s, proposal, accept, actor)
    return ("accepted" if accept else "declined"), "buyer"


def op_comment(s, plan, actor):
    m = _milestone(s, plan, _text("milestone_id", 36))
    internal = request.form.get("internal") == "1"
    name = actor.split(":", 1)[-1]
    sharing.add_comment(s, plan, m, _text("body", 2000), side="seller", name=name, email="",
                        actor=actor, internal=internal)
    return ("note" if internal else "comment"), f"m-{m.id}"


def op_link_create(s, plan, actor):
    days = _int("expires_in_days")
    expires = clock.now() + timedelta(days=days) if days else None
    if days is not None and not 1 <= days <= 365:
        raise Invalid("expires_in_days", "between 1 and 365 days, or empty for no expiry")
    sharing.create_link(s, plan, actor, keys(), label=_text("label", 200), expires_at=expires,
                        access_mode=_text("access_mode", 12) or "open",
                        allowed_domains=_text("allowed_domains", 2000))
    return "link", "links"


def op_link_access(s, plan, actor):
    link = sharing.get_link(s, plan.tenant_id, _text("link_id", 36))
    if link.plan_id != plan.id:
        raise NotFound("No buyer link with this id in this plan.")
    access.set_access(s, link, _text("access_mode", 12), _text("allowed_domains", 2000), actor)
    return "access", "links"


def _bounded(name: str, low: int, high: int, what: str) -> int:
    value = _int(name)
    if value is None or not low <= value <= high:
        raise Invalid(name, f"{what} from {low} to {high}")
    return value


def op_reminders(s, plan, actor):
    """The plan's buyer reminders (notifications.PLAN_DEFAULTS): on/off, how many days before
    the due date, weekends, and the local hour they go out at."""
    values = {"reminders": request.form.get("reminders") == "1",
              "weekends": request.form.get("weekends") == "1",
              "remind_days_before": _bounded("remind_days_before", 0, 30, "days"),
              "send_hour": _bounded("send_hour", 0, 23, "an hour"),
              "timezone": _text("timezone", 64) or "UTC"}
    notifications.save_settings(s, plan.tenant_id, values, plan_id=plan.id)
    s.add(Activity(tenant_id=plan.tenant_id, plan_id=plan.id, actor=actor,  # no new plan version
                   action="reminders.settings", detail=values))
    return "reminders", "reminders"


def op_link_revoke(s, plan, actor):
    link = sharing.get_link(s, plan.tenant_id, _text("link_id", 36))
    if link.plan_id != plan.id:
        raise NotFound("No buyer link with this id in this plan.")
    sharing.revoke_link(s, link, actor)
    return "revoked", "links"


LABELS = {
    "value_summary": "Value summary", "ideal_results": "Ideal results", "go_live_date": "Go-live date",
    "start_date": "Start date", "dates": "Other key dates", "resources": "Linked resources",
    "due_date": "Due date", "owner_side": "Owner side", "expires_in_days": "Expires after",
    "access_mode": "Who may open it", "allowed_domains": "Allowed domains",
    "remind_days_before": "Days before the due date", "send_hour": "Send at", "timezone": "Time zone",
    "body": "Comment", "name": "Name", "title": "Title", "email": "Email",
    "depends_on": "Waits on", "dep_days": "Days after",
}

OPS = {
    "plan": op_plan, "stage-add": op_stage_add, "stage-rename": op_stage_rename,
    "stage-move": op_stage_move, "stage-delete": op_stage_delete,
    "milestone-add": op_milestone_add, "milestone-edit": op_milestone_edit,
    "milestone-move": op_milestone_move, "milestone-done": op_milestone_done, "milestone-delete": op_milestone_delete,
    "person-add": op_person_add, "person-edit": op_person_edit, "person-delete": op_person_delete,
    "template": op_template, "decide": op_decide, "comment": op_comment,
    "link-create": op_link_create, "link-revoke": op_link_revoke, "link-access": op_link_access,
    "reminders": op_reminders,
}


@bp.post("/plans/<plan_id>/do")
def do(plan_id):
    ed = _session_for(plan_id)
    if not _origin_ok():
        return _render(ed, status=403, error="This form came from another website, so it was ignored.")
    if not sharing.csrf_ok(ed["n"], plan_id, request.form.get("csrf"), keys()):
        return _render(ed, status=403, error="This page was out of date, so nothing was saved. "
                       "It has been reloaded; please try again.")
    handler = OPS.get(request.form.get("op", ""))
    if handler is None:
        return _render(ed, status=400, error="Unknown action.")
    s = session()
    try:
        plan = plans.get_plan(s, ed["t"], plan_id)
        code, anchor = handler(s, plan, ed["a"])
        s.commit()
    except (ProblemError, DomainError, ValidationError) as exc:
        s.rollback()
        s.expire_all()
        errors = {}
        if isinstance(exc, ValidationError):
            for e in exc.errors(include_url=False):
                field = next((str(p) for p in reversed(e["loc"]) if str(p) in request.form), None)
                errors.setdefault(field or "form", plain(e["msg"]))
            status = 422
            message = "; ".join(f"{LABELS.get(k, k.replace('_', ' '))}: {v}" for k, v in errors.items())
        elif isinstance(exc, VersionConflict):
            status, message = 409, ("Someone else changed this first; the page now shows the current "
                                    "version. Apply your change again.")
            return _render(ed, status=status, error=message)
        elif isinstance(exc, Invalid):
            errors = {exc.field: exc.message}
            status = 422
            message = f"{LABELS.get(exc.field, exc.field.replace('_', ' '))}: {exc.message}"
        else:
            status, message = describe(exc).status, exc.detail
        message += " Everything you typed is still in the form."
        return _render(ed, status=status, error=message, posted=Posted(request.form, errors))
    return redirect(url_for("editor.page", plan_id=plan_id, ok=code) + f"#{anchor}", code=303)


@bp.post("/plans/<plan_id>/sign-out-everywhere")
def sign_out_everywhere(plan_id):
    """End every editor session on this plan (every browser a link was opened in), and
    this browser's editor cookie. Signed-in users' own sessions stay: they are not per plan."""
    ed = _session_for(plan_id)
    if not _origin_ok() or not sharing.csrf_ok(ed["n"], plan_id, request.form.get("csrf"), keys()):
        return _render(ed, status=403, error="This form came from another page, so it was ignored.")
    s = session()
    ended = users.revoke_sessions(s, tenant_id=ed["t"], plan_id=plan_id)
    s.add(Activity(tenant_id=ed["t"], plan_id=plan_id, actor=ed["a"],  # no new plan version
                   action="editor.signed_out_everywhere", detail={"sessions": ended}))
    s.commit()
    response = Response(render_template("editor/closed.html", detail=(
        f"Signed out everywhere: {ended} editor session(s) on this plan ended. Open the plan "
        "again from your CRM to keep working.")), mimetype="text/html")
    response.delete_cookie(users.EDITOR_COOKIE, path=f"/editor/plans/{plan_id}")
    return response


# ---- the API entry point -------------------------------------------------------------


@api_bp.post("/plans/<plan_id>/editor-link")
@api_key_required
def create_editor_link(plan_id):
    plans.get_plan(session(), g.principal.tenant_id, plan_id, full=False)
    url, expires_at = sharing.editor_link(g.principal.tenant_id, plan_id, g.principal.actor, keys(),
                                          key_id=g.principal.key_id)
    response = render(EditorLinkOut, {"url": url, "expires_at": expires_at})
    response.headers["Cache-Control"] = "no-store"
    return response



# ---- import from a spreadsheet (webapp/spreadsheets.py) -------------------------------
#
# A page of its own, stateless between steps: the uploaded file travels back in the
# preview form (base64), is parsed again on every step with the same checks, and is
# written only by the "Import" button, in one transaction.

FIELD_LABELS = [("title", "Title"), ("stage", "Stage"), ("owner_name", "Owner name"),
                ("owner_email", "Owner e-mail"), ("owner_side", "Owner side"),
                ("due_date", "Due date"), ("status", "Status"), ("risk", "Risk"),
                ("notes", "Notes"), ("internal", "Internal"), ("depends_on", "Depends on"),
                ("days_after", "Days after")]


def _import_render(ed: dict, *, status=200, error=None, result=None, data="", media=""):
    plan = plans.get_plan(session(), ed["t"], ed["p"])
    html = render_template(
        "editor/import.html", plan=plan, csrf=sharing.csrf_token(ed["n"], plan.id, keys()),
        action=url_for("editor.import_page", plan_id=plan.id), error=error, result=result,
        data=data, media=media, fields=FIELD_LABELS, xlsx_type=spreadsheets.XLSX_TYPE,
        valid=result and len(result.valid_rows))
    return Response(html, status=status, mimetype="text/html")


def _uploaded() -> tuple[bytes, str]:
    """The file: the upload (first step) or the copy carried by the preview form."""
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        media = spreadsheets.XLSX_TYPE if upload.filename.lower().endswith(".xlsx") \
            else spreadsheets.CSV_TYPE
        return upload.read(), media
    media = request.form.get("media", "")
    if media not in (spreadsheets.XLSX_TYPE, spreadsheets.CSV_TYPE):
        raise spreadsheets.Unreadable("choose a file first")
    try:
        return base64.b64decode(request.form.get("data", ""), validate=True), media
    except ValueError:
        raise spreadsheets.Unreadable("the file was lost on the way; choose it again") from None


@bp.get("/plans/<plan_id>/import")
def import_page(plan_id):
    return _import_render(_session_for(plan_id))


@bp.post("/plans/<plan_id>/import")
def import_post(plan_id):
    ed = _session_for(plan_id)
    # The preview form carries the file back base64-encoded (4/3 of its size): whatever was
    # accepted as an upload must fit when it comes back.
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    request.max_content_length = limit * 4 // 3 + 16 * 1024
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        return _import_render(ed, status=413, error=spreadsheets.too_large(request.content_length, limit))
    security.check_form()  # skipped before the view for a body past the default limit
    if upload is not None and upload.filename:
        size = upload.stream.seek(0, 2)
        upload.stream.seek(0)
        if size > limit:
            return _import_render(ed, status=413, error=spreadsheets.too_large(size, limit))
    if not _origin_ok() or not sharing.csrf_ok(ed["n"], plan_id, request.form.get("csrf"), keys()):
        return _import_render(ed, status=403, error="This form came from another page or is out of "
                              "date, so it was ignored. Please try again.")
    s = session()
    plan = plans.get_plan(s, ed["t"], plan_id)
    mapping = {name: request.form.get(f"map_{name}", "") for name, _ in FIELD_LABELS
               if f"map_{name}" in request.form}
    try:
        data, media = _uploaded()
        result = spreadsheets.preview(spreadsheets.read_table(data, media), mapping, plan)
    except spreadsheets.Unreadable as exc:
        return _import_render(ed, status=422, error=f"The file could not be read: {exc}.")
    carried = {"data": base64.b64encode(data).decode(), "media": media}
    if request.form.get("op") != "import":
        return _import_render(ed, result=result, **carried)
    valid_only = request.form.get("mode") == "valid_only"
    blocking = [p for p in result.problems if p["row"] is None or not valid_only]
    if blocking:
        return _import_render(ed, status=422, result=result, **carried, error=(
            f"{len(blocking)} problem(s), listed below: correct the file or the columns, or "
            "choose to import the valid rows only."))
    try:
        spreadsheets.import_rows(s, plan, result.valid_rows, ed["a"])
        s.commit()
    except DomainError as exc:
        s.rollback()
        return _import_render(ed, status=describe(exc).status, result=result, **carried,
                              error=exc.detail)
    return redirect(url_for("editor.page", plan_id=plan_id, ok="imported") + "#milestones",
                    code=303)
