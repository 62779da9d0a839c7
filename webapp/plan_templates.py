"""Built-in plan templates, as data.

Each milestone's due date is an offset in days from an anchor: the plan's
start date ("start") or its go-live date ("go_live", usually negative or, for
post-signature work, positive). A plan without a go-live date gets one
`default_go_live_days` after its start, so every template milestone is dated.
`close` marks the milestone that closes the deal (it can drive the CRM close
date); `gate` hints the deal stage a completed milestone implies, by position
in the pipeline's open stages (0 = first), used for the default stage mapping.
"""
from __future__ import annotations

from datetime import date, timedelta

TEMPLATES: dict[str, dict] = {
    "enterprise": {
        "name": "Enterprise deal",
        "description": "Four stages from discovery to onboarding, for deals with several "
        "stakeholders, a legal review and an implementation.",
        "default_go_live_days": 120,
        "stages": [
            {
                "name": "Discovery",
                "milestones": [
                    {"title": "Discovery call", "owner_side": "both", "anchor": "start", "days": 0,
                     "description": "Agree on the problem, the people involved and the next steps."},
                    {"title": "Identify problems to solve", "owner_side": "buyer", "anchor": "start", "days": 7,
                     "description": "List the challenges this project must address, in the buyer's words."},
                    {"title": "Define requirements and success criteria", "owner_side": "both",
                     "anchor": "start", "days": 14, "gate": 1,
                     "description": "Write down what success looks like and how it will be measured."},
                ],
            },
            {
                "name": "Validation",
                "milestones": [
                    {"title": "Customized product demo", "owner_side": "seller", "anchor": "start", "days": 24,
                     "description": "A demo built around the buyer's requirements."},
                    {"title": "Follow-up demo with executive team", "owner_side": "both", "anchor": "start",
                     "days": 35, "gate": 2,
                     "description": "Show the executive sponsor the outcomes, not the features."},
                    {"title": "Share project roadmap", "owner_side": "seller", "anchor": "start", "days": 42,
                     "description": "The implementation plan from signature to go-live."},
                ],
            },
            {
                "name": "Final agreements",
                "milestones": [
                    {"title": "Legal and compliance review", "owner_side": "buyer", "anchor": "go_live",
                     "days": -60, "description": "Security questionnaire, DPA and contract review."},
                    {"title": "Client references", "owner_side": "seller", "anchor": "go_live", "days": -55,
                     "description": "Calls with customers in a similar situation."},
                    {"title": "Commercial agreement", "owner_side": "both", "anchor": "go_live", "days": -45,
                     "close": True, "description": "Order form signed by both parties."},
                ],
            },
            {
                "name": "Implementation",
                "milestones": [
                    {"title": "Project kickoff", "owner_side": "both", "anchor": "go_live", "days": -30,
                     "description": "Meet the implementation team and confirm the timeline."},
                    {"title": "Onboarding", "owner_side": "both", "anchor": "go_live", "days": 0,
                     "description": "Users trained and live."},
                ],
            },
        ],
    },
    "quick": {
        "name": "Quick deal",
        "description": "Four steps for short, transactional deals.",
        "default_go_live_days": 30,
        "stages": [
            {
                "name": "Plan",
                "milestones": [
                    {"title": "Intro call and needs", "owner_side": "both", "anchor": "start", "days": 0,
                     "description": "Confirm the need, the budget and who signs."},
                    {"title": "Proposal reviewed", "owner_side": "buyer", "anchor": "start", "days": 7, "gate": 1,
                     "description": "The buyer has the proposal and has asked their questions."},
                    {"title": "Order form signed", "owner_side": "both", "anchor": "start", "days": 14,
                     "close": True, "description": "Signed by both parties."},
                    {"title": "Onboarding call", "owner_side": "seller", "anchor": "go_live", "days": 0,
                     "description": "Set up and first use."},
                ],
            }
        ],
    },
}


def summaries(s=None, tenant_id: str | None = None) -> list[dict]:
    """The built-in templates, then (given a session and tenant) the tenant's own."""
    items = dict(TEMPLATES)
    if s is not None and tenant_id:
        items.update({row.id: as_template(row) for row in tenant_templates(s, tenant_id)})
    return [
        {
            "key": key,
            "name": t["name"],
            "description": t["description"],
            "stage_count": len(t["stages"]),
            "milestone_count": milestone_count(t["stages"]),
            "default_for_pipeline": t.get("default_for_pipeline"),
        }
        for key, t in items.items()
    ]


def choices(s, tenant_id: str, pipeline: str | None, fallback_pipeline: str | None) -> list[dict]:
    """The templates a new plan can start from, built-in then the tenant's, the one to preselect
    flagged `default`: the default for the deal's pipeline when it is known and has one, else the
    default for the tenant's (installation's) default pipeline; no flag when neither has one."""
    items = summaries(s, tenant_id)
    by_pipeline = {t["default_for_pipeline"]: t["key"] for t in items if t["default_for_pipeline"]}
    chosen = by_pipeline.get(pipeline) or by_pipeline.get(fallback_pipeline or "default")
    return [{**t, "default": t["key"] == chosen} for t in items]


def milestone_count(stages: list[dict]) -> int:
    return sum(len(st["milestones"]) for st in stages)


# Plans with 11-15 steps close best; more than 30 do no better than none (issue 12).
ADVISED = (6, 20)


def size_warning(stages: list[dict]) -> str | None:
    n = milestone_count(stages)
    if n < ADVISED[0]:
        return (f"{n} milestone{'s' if n != 1 else ''}: plans with fewer than {ADVISED[0]} rarely "
                "show the buyer the whole way to go-live. 11 to 15 work best.")
    if n > ADVISED[1]:
        return (f"{n} milestones: above {ADVISED[1]} buyers stop reading; plans with more than 30 "
                "close no better than no plan. 11 to 15 work best.")
    return None


# ---- tenants' own templates ------------------------------------------------------------


def tenant_templates(s, tenant_id: str) -> list:
    from sqlalchemy import select

    from .models import PlanTemplate
    return list(s.scalars(select(PlanTemplate).where(PlanTemplate.tenant_id == tenant_id)
                          .order_by(PlanTemplate.name)))


def as_template(row) -> dict:
    return {"name": row.name, "description": row.description, "stages": row.stages,
            "default_go_live_days": row.default_go_live_days,
            "default_for_pipeline": row.default_for_pipeline}


def resolve(s, tenant_id: str, key: str) -> dict | None:
    """A built-in template by key, or one of the tenant's own by id; None when neither."""
    if key in TEMPLATES:
        return TEMPLATES[key]
    from .models import PlanTemplate
    row = s.get(PlanTemplate, key) if key and len(key) <= 36 else None
    return as_template(row) if row is not None and row.tenant_id == tenant_id else None


OWNER_SIDES = ("buyer", "seller", "both")


def parse(text: str) -> list[dict]:
    """Stages and milestones from the settings form's text, one line each:

        ## Discovery
        Discovery call | both | start+0
        Legal review | buyer | go-live-60 | internal
        Order form signed | both | go-live-45 | close

    A refusal is a ValueError naming the line, in plain words.
    """
    stages: list[dict] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            name = line.lstrip("#").strip()
            if not name or len(name) > 120:
                raise ValueError(f"line {number}: a stage needs a name of 1 to 120 characters")
            stages.append({"name": name, "milestones": []})
            continue
        if not stages:
            raise ValueError(f"line {number}: start with a stage, e.g. “## Discovery”")
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3:
            raise ValueError(f"line {number}: write “title | owner side | start+7”")
        title, side, when, *flags = parts
        if not title or len(title) > 200:
            raise ValueError(f"line {number}: a title of 1 to 200 characters")
        if side.lower() not in OWNER_SIDES:
            raise ValueError(f"line {number}: the owner side is buyer, seller or both, not “{side}”")
        anchor, days = _when(when, number)
        unknown = [f for f in flags if f.lower() not in ("internal", "close")]
        if unknown:
            raise ValueError(f"line {number}: “{unknown[0]}” is not “internal” or “close”")
        m = {"title": title, "owner_side": side.lower(), "anchor": anchor, "days": days,
             "description": "", "internal": "internal" in [f.lower() for f in flags]}
        if "close" in [f.lower() for f in flags]:
            m["close"] = True
        stages[-1]["milestones"].append(m)
    if not stages:
        raise ValueError("add at least one stage (“## Discovery”) with milestones under it")
    empty = next((st["name"] for st in stages if not st["milestones"]), None)
    if empty:
        raise ValueError(f"the stage “{empty}” has no milestones")
    if sum(1 for st in stages for m in st["milestones"] if m.get("close")) > 1:
        raise ValueError("only one milestone can close the deal")
    return stages


def _when(text: str, number: int) -> tuple[str, int]:
    compact = text.replace(" ", "").lower()
    for prefix, anchor in (("start", "start"), ("go-live", "go_live"), ("golive", "go_live")):
        if compact.startswith(prefix):
            rest = compact[len(prefix):] or "+0"
            if rest[0] in "+-" and rest[1:].isdigit() and int(rest[1:]) <= 3650:
                return anchor, int(rest)
    raise ValueError(f"line {number}: the due date is “start+7” or “go-live-30” (days), not “{text}”")


def as_text(stages: list[dict]) -> str:
    lines = []
    for st in stages:
        lines.append(f"## {st['name']}")
        for m in st["milestones"]:
            when = ("start" if m["anchor"] == "start" else "go-live") + f"{m['days']:+d}"
            flags = [f for f in ("internal", "close") if m.get(f)]
            lines.append(" | ".join([m["title"], m["owner_side"], when, *flags]))
    return "\n".join(lines)


def expand(key: str, start: date, go_live: date | None) -> tuple[date, list[dict]]:
    """The template's stages with dated milestones, and the go-live date used."""
    return expand_template(TEMPLATES[key], start, go_live)


def expand_template(template: dict, start: date, go_live: date | None) -> tuple[date, list[dict]]:
    go_live = go_live or start + timedelta(days=template["default_go_live_days"])
    anchors = {"start": start, "go_live": go_live}
    stages = []
    for stage in template["stages"]:
        milestones = [
            {
                "title": m["title"],
                "description": m["description"],
                "owner_side": m["owner_side"],
                "due_date": anchors[m["anchor"]] + timedelta(days=m["days"]),
                "internal": bool(m.get("internal")),
            }
            for m in stage["milestones"]
        ]
        stages.append({"name": stage["name"], "milestones": milestones})
    return go_live, stages
