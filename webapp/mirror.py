"""Mirror rules (DESIGN §6), as pure functions: plan state + stage mapping +
the pipeline's ordered stages -> the deal update to make.

- A milestone can gate a stage: "when done, the deal is at least at stage S".
  The desired stage is the furthest gate reached.
- Deals move forward only; never into or out of a closed stage unless the
  admin allows it; never back.
- We do not fight the rep. If the rep moved the deal past open gates, or back
  behind a stage we set, the decision carries a mismatch instead of a move.
  A newly completed gate beyond what we last wrote is new information, and
  moves the deal again.
- The close milestone's due date drives the close date, unless the rep changed
  the close date after we last wrote it and the milestone's date did not move.
- Summary properties are written only when they differ from what we last wrote.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from connector.base import PipelineStage

from . import plan_templates


def key(title: str) -> str:
    """Milestones are mapped by title, case- and space-insensitively."""
    return " ".join(title.lower().split())


@dataclass(frozen=True)
class StageMap:
    gates: dict = field(default_factory=dict)  # milestone key -> stage id
    close_milestones: tuple = ()  # milestone keys whose due date drives the close date
    allow_closed: bool = False


@dataclass(frozen=True)
class MilestoneState:
    title: str
    done: bool
    due_date: date | None = None


@dataclass(frozen=True)
class DealState:
    stage: str | None
    close_date: date | None = None


@dataclass(frozen=True)
class LastWrite:
    stage: str | None = None
    close_date: date | None = None
    properties: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    stage: str | None = None
    close_date: date | None = None
    properties: dict = field(default_factory=dict)
    mismatch: dict | None = None

    def is_empty(self) -> bool:
        return self.stage is None and self.close_date is None and not self.properties


def default_mapping(pipeline: list[PipelineStage]) -> StageMap:
    """Gates for the built-in templates' milestones, spread over the open stages.

    Open stages are ordered by win probability (then position); a template's
    gate hint N maps to the N-th open stage, and its close milestone gates the
    last open stage (e.g. "Contract sent") and drives the close date.
    """
    open_stages = sorted((s for s in pipeline if not s.closed),
                         key=lambda s: (s.probability if s.probability is not None else 0, s.position))
    if not open_stages:
        return StageMap()
    last = len(open_stages) - 1
    gates, closers = {}, []
    for template in plan_templates.TEMPLATES.values():
        for stage in template["stages"]:
            for m in stage["milestones"]:
                if m.get("close"):
                    gates[key(m["title"])] = open_stages[last].id
                    closers.append(key(m["title"]))
                elif "gate" in m:
                    gates[key(m["title"])] = open_stages[min(m["gate"], last)].id
    return StageMap(gates=gates, close_milestones=tuple(closers))


def decide(milestones: list[MilestoneState], mapping: StageMap, pipeline: list[PipelineStage],
           deal: DealState, last: LastWrite, summary: dict) -> Decision:
    stage, mismatch = _stage(milestones, mapping, pipeline, deal, last)
    close_date, close_mismatch = _close_date(milestones, mapping, pipeline, deal, last)
    if close_mismatch:
        mismatch = {**(mismatch or {}), "close_date": close_mismatch}
    properties = {k: v for k, v in summary.items() if last.properties.get(k) != v}
    return Decision(stage=stage, close_date=close_date, properties=properties, mismatch=mismatch)


def _stage(milestones, mapping, pipeline, deal, last):
    rank = {s.id: i for i, s in enumerate(pipeline)}
    closed = {s.id for s in pipeline if s.closed}
    gated = []  # (rank, stage id, done)
    for m in milestones:
        gate = mapping.gates.get(key(m.title))
        if gate in rank and (mapping.allow_closed or gate not in closed):
            gated.append((rank[gate], gate, m.done, m.title))
    reached = max(((r, s) for r, s, done, _ in gated if done), default=None)
    target = reached[1] if reached else None
    current = deal.stage
    if current is None:
        return target, None
    if current not in rank:  # another pipeline, or a stage we do not know: hands off
        return None, None
    if current in closed and not mapping.allow_closed:
        return None, _ahead(gated, rank, current, target)
    if target is not None and rank[target] > rank[current]:
        rep_moved_back = (last.stage in rank and last.stage != current
                          and rank[current] < rank[last.stage] and rank[target] <= rank[last.stage])
        if rep_moved_back:
            return None, {"kind": "behind", "deal_stage": current, "expected_stage": target}
        return target, None
    return None, _ahead(gated, rank, current, target)


def _ahead(gated, rank, current, target):
    """The deal sits at or past a gate whose milestone is not done yet."""
    floor = rank[target] if target else -1
    open_beyond = [(r, title) for r, _, done, title in gated if not done and r > floor]
    if open_beyond and rank[current] >= min(open_beyond)[0]:
        passed = sorted((r, title) for r, title in open_beyond if r <= rank[current])
        return {"kind": "ahead", "deal_stage": current, "expected_stage": target,
                "open_milestones": [title for _, title in passed]}
    return None


def advice(mismatch: dict | None, labels: dict) -> list[str]:
    """What the rep should do about a mismatch, one sentence per disagreement.

    `labels` maps stage ids to the CRM's labels. The app never moves a deal back, so
    the advice never says to: a deal ahead of the plan (e.g. a plan started on a deal
    already well along) is fixed by marking done what already happened.
    """
    if not mismatch:
        return []
    out = []
    label = lambda stage: f"“{labels.get(stage, stage)}”"
    kind, deal, expected = mismatch.get("kind"), mismatch.get("deal_stage"), mismatch.get("expected_stage")
    names = ", ".join(f"“{t}”" for t in mismatch.get("open_milestones") or [])
    if kind == "ahead" and expected is None:
        out.append(f"The deal is already at {label(deal)}, further along than the plan: no milestone "
                   f"that moves the deal is done yet. If {names or 'those milestones'} already happened, "
                   "mark them done. Leave the deal where it is; MutualPlan never moves a deal back.")
    elif kind == "ahead":
        out.append(f"The deal is at {label(deal)}, past {label(expected)} where the completed milestones "
                   f"put it. Still open: {names or 'the milestones for the stages in between'}. Mark them "
                   "done if they happened; MutualPlan never moves a deal back.")
    elif kind == "behind":
        out.append(f"Someone moved the deal back to {label(deal)}, but the completed milestones put it at "
                   f"{label(expected)}. MutualPlan does not undo a rep's move: if the deal belongs at "
                   f"{label(expected)}, move it in the CRM; if a milestone is not really done, mark it "
                   "not done here.")
    close = mismatch.get("close_date")
    if close:
        out.append(f"The close date was changed in the CRM to {close.get('deal') or 'nothing'}, but the "
                   f"close milestone is due {close.get('expected')}. MutualPlan leaves the CRM's date alone; "
                   "change the milestone's due date or the deal's close date so they agree.")
    return out


def _close_date(milestones, mapping, pipeline, deal, last):
    closer = next((m for m in milestones if key(m.title) in mapping.close_milestones and m.due_date), None)
    if closer is None or closer.due_date == deal.close_date:
        return None, None
    closed = {s.id for s in pipeline if s.closed}
    if deal.stage in closed:
        return None, None
    rep_changed = (last.close_date is not None and deal.close_date != last.close_date
                   and closer.due_date == last.close_date)
    if rep_changed:
        return None, {"deal": deal.close_date and deal.close_date.isoformat(),
                      "expected": closer.due_date.isoformat()}
    return closer.due_date, None
