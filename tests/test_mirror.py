"""The mirror rules, as properties (hypothesis) and as examples."""
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.memory import DEFAULT_PIPELINE
from webapp import mirror
from webapp.mirror import DealState, LastWrite, MilestoneState, StageMap

PIPELINE = DEFAULT_PIPELINE
RANK = {s.id: i for i, s in enumerate(PIPELINE)}
TITLES = [f"m{i}" for i in range(8)]
OPEN = [s.id for s in PIPELINE if not s.closed]
ALL = [s.id for s in PIPELINE]

milestones = st.lists(
    st.builds(MilestoneState, st.sampled_from(TITLES), st.booleans(),
              st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2027, 12, 31)))),
    max_size=8, unique_by=lambda m: m.title)
mappings = st.builds(
    StageMap,
    gates=st.dictionaries(st.sampled_from(TITLES), st.sampled_from(ALL), max_size=6),
    close_milestones=st.lists(st.sampled_from(TITLES), max_size=1).map(tuple),
    allow_closed=st.booleans())
deals = st.builds(DealState, st.one_of(st.none(), st.sampled_from(ALL)),
                  st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2027, 12, 31))))
lasts = st.builds(LastWrite, st.one_of(st.none(), st.sampled_from(ALL)),
                  st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2027, 12, 31))), st.just({}))
summaries = st.fixed_dictionaries({"progress_percent": st.sampled_from(["0", "50"]), "risk": st.just("on_track")})


@settings(max_examples=400, deadline=None)
@given(milestones, mappings, deals, lasts, summaries)
def test_never_backwards_never_out_of_closed(ms, mapping, deal, last, summary):
    decision = mirror.decide(ms, mapping, PIPELINE, deal, last, summary)
    if decision.stage is None or deal.stage is None:
        return
    assert RANK[decision.stage] > RANK[deal.stage]
    closed = {s.id for s in PIPELINE if s.closed}
    if not mapping.allow_closed:
        assert deal.stage not in closed and decision.stage not in closed


@settings(max_examples=400, deadline=None)
@given(milestones, mappings, deals, lasts, summaries)
def test_idempotent(ms, mapping, deal, last, summary):
    """Applying a decision and deciding again asks for nothing more."""
    first = mirror.decide(ms, mapping, PIPELINE, deal, last, summary)
    applied_deal = DealState(first.stage or deal.stage, first.close_date or deal.close_date)
    applied_last = LastWrite(first.stage or last.stage, first.close_date or last.close_date,
                             {**last.properties, **first.properties})
    second = mirror.decide(ms, mapping, PIPELINE, applied_deal, applied_last, summary)
    assert second.stage is None and second.close_date is None and second.properties == {}


@settings(max_examples=300, deadline=None)
@given(milestones, mappings, deals, lasts, summaries, st.randoms())
def test_order_independent(ms, mapping, deal, last, summary, rnd):
    shuffled = list(ms)
    rnd.shuffle(shuffled)
    assert mirror.decide(ms, mapping, PIPELINE, deal, last, summary) == \
        mirror.decide(shuffled, mapping, PIPELINE, deal, last, summary)


GATES = StageMap(gates={"requirements": "qualifiedtobuy", "exec demo": "presentationscheduled",
                        "contract": "contractsent"}, close_milestones=("contract",))


def test_furthest_gate_reached_moves_the_deal():
    ms = [MilestoneState("Requirements", True), MilestoneState("Exec demo", True),
          MilestoneState("Contract", False, date(2027, 1, 31))]
    d = mirror.decide(ms, GATES, PIPELINE, DealState("appointmentscheduled"), LastWrite(), {})
    assert d.stage == "presentationscheduled"
    assert d.close_date == date(2027, 1, 31)
    assert d.mismatch is None


def test_rep_ahead_of_the_plan_is_a_mismatch_not_a_move():
    ms = [MilestoneState("Requirements", True), MilestoneState("Exec demo", False)]
    d = mirror.decide(ms, GATES, PIPELINE, DealState("decisionmakerboughtin"), LastWrite(), {})
    assert d.stage is None
    assert d.mismatch == {"kind": "ahead", "deal_stage": "decisionmakerboughtin", "expected_stage": "qualifiedtobuy",
                          "open_milestones": ["Exec demo"]}
    advice = mirror.advice(d.mismatch, {"decisionmakerboughtin": "Decision maker bought-in"})
    assert "“Exec demo”" in advice[0] and "never moves a deal back" in advice[0]
    assert "move the deal back" not in advice[0]


def test_plan_started_on_a_deal_further_along_advises_marking_done_not_moving_back():
    ms = [MilestoneState("Requirements", False), MilestoneState("Exec demo", False),
          MilestoneState("Contract", False)]
    d = mirror.decide(ms, GATES, PIPELINE, DealState("decisionmakerboughtin"), LastWrite(), {})
    assert d.stage is None
    assert d.mismatch["expected_stage"] is None
    assert d.mismatch["open_milestones"] == ["Requirements", "Exec demo"]  # not Contract: its stage is later
    [text] = mirror.advice(d.mismatch, {"decisionmakerboughtin": "Decision maker bought-in"})
    assert "already at “Decision maker bought-in”" in text
    assert "mark them done" in text and "“Requirements”, “Exec demo”" in text
    assert "None" not in text


def test_rep_moved_back_is_not_fought_until_a_new_gate_is_reached():
    ms = [MilestoneState("Requirements", True), MilestoneState("Exec demo", False)]
    last = LastWrite(stage="qualifiedtobuy")
    d = mirror.decide(ms, GATES, PIPELINE, DealState("appointmentscheduled"), last, {})
    assert d.stage is None and d.mismatch["kind"] == "behind"
    ms[1] = MilestoneState("Exec demo", True)
    d = mirror.decide(ms, GATES, PIPELINE, DealState("appointmentscheduled"), last, {})
    assert d.stage == "presentationscheduled"


def test_closed_deals_are_left_alone_unless_allowed():
    ms = [MilestoneState("Requirements", True)]
    assert mirror.decide(ms, GATES, PIPELINE, DealState("closedlost"), LastWrite(), {}).stage is None
    won = StageMap(gates={"contract": "closedwon"})
    done = [MilestoneState("Contract", True)]
    assert mirror.decide(done, won, PIPELINE, DealState("contractsent"), LastWrite(), {}).stage is None
    allowed = StageMap(gates={"contract": "closedwon"}, allow_closed=True)
    assert mirror.decide(done, allowed, PIPELINE, DealState("contractsent"), LastWrite(), {}).stage == "closedwon"


def test_rep_changed_close_date_is_kept():
    due = date(2027, 1, 31)
    ms = [MilestoneState("Contract", False, due)]
    d = mirror.decide(ms, GATES, PIPELINE, DealState("qualifiedtobuy", due + timedelta(days=10)),
                      LastWrite(close_date=due), {})
    assert d.close_date is None and d.mismatch["close_date"]["expected"] == due.isoformat()
    moved = [MilestoneState("Contract", False, due + timedelta(days=20))]
    d = mirror.decide(moved, GATES, PIPELINE, DealState("qualifiedtobuy", due + timedelta(days=10)),
                      LastWrite(close_date=due), {})
    assert d.close_date == due + timedelta(days=20)


def test_unchanged_summary_is_not_written():
    summary = {"progress_percent": "40", "risk": "at_risk"}
    d = mirror.decide([], GATES, PIPELINE, DealState("qualifiedtobuy"),
                      LastWrite(properties={"progress_percent": "40", "risk": "on_track"}), summary)
    assert d.properties == {"risk": "at_risk"}


def test_default_mapping_follows_probabilities():
    mapping = mirror.default_mapping(PIPELINE)
    assert mapping.gates["commercial agreement"] == "contractsent"
    assert mapping.gates["define requirements and success criteria"] == "qualifiedtobuy"
    assert mapping.gates["follow-up demo with executive team"] == "presentationscheduled"
    assert "commercial agreement" in mapping.close_milestones
    reordered = [s.__class__(s.id, s.label, 6 - s.position, s.probability, s.closed, s.won) for s in PIPELINE]
    assert mirror.default_mapping(reordered).gates == mapping.gates  # probability, not position, decides
