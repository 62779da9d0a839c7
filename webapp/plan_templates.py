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


def summaries() -> list[dict]:
    return [
        {
            "key": key,
            "name": t["name"],
            "description": t["description"],
            "stage_count": len(t["stages"]),
            "milestone_count": sum(len(s["milestones"]) for s in t["stages"]),
        }
        for key, t in TEMPLATES.items()
    ]


def expand(key: str, start: date, go_live: date | None) -> tuple[date, list[dict]]:
    """The template's stages with dated milestones, and the go-live date used."""
    template = TEMPLATES[key]
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
            }
            for m in stage["milestones"]
        ]
        stages.append({"name": stage["name"], "milestones": milestones})
    return go_live, stages
