"""F1: optimistic locking is enforced by the database for plans, stages, milestones and
stakeholders. N writers holding the same If-Match, sent at once over real HTTP to a threaded
server (one thread, one session, one database connection per request): exactly one wins,
the others answer 412 with the version that won."""
from __future__ import annotations

import threading

import pytest
import requests
from conftest import make_api
from werkzeug.serving import make_server

from webapp import dependencies, plans

WRITERS = 20


@pytest.fixture
def server(app):
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join()


def race(base: str, key: str, path: str, version: int, bodies: list[dict]) -> list[requests.Response]:
    """Send one PATCH per body, all released together by a barrier, each on its own connection."""
    barrier = threading.Barrier(len(bodies))
    answers: list[requests.Response | None] = [None] * len(bodies)

    def writer(i: int) -> None:
        with requests.Session() as http:
            barrier.wait()
            answers[i] = http.patch(base + "/api/v1" + path, json=bodies[i], timeout=60, headers={
                "Authorization": f"Bearer {key}", "If-Match": f'"{version}"'})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def _resources(api, plan) -> dict[str, tuple[str, int, str]]:
    """(path, version, text field) of one plan, stage, milestone and stakeholder."""
    person = api.post(f"/plans/{plan['id']}/stakeholders",
                      json={"name": "Dana", "side": "buyer"}).json
    stage, m = plan["stages"][0], plan["stages"][0]["milestones"][0]
    return {"plan": (f"/plans/{plan['id']}", plan["version"] + 1, "title"),
            "stage": (f"/stages/{stage['id']}", stage["version"], "name"),
            "milestone": (f"/milestones/{m['id']}", m["version"], "title"),
            "stakeholder": (f"/stakeholders/{person['id']}", person["version"], "title")}


@pytest.mark.parametrize("kind", ["plan", "stage", "milestone", "stakeholder"])
def test_one_of_twenty_writers_with_the_same_if_match_wins(app, client, plan, server, kind):
    api = make_api(app, client, "racers")
    mine = api.post("/plans", json={"title": "Race", "template": "quick"}).json
    path, version, field = _resources(api, mine)[kind]
    answers = race(server, api.key, path, version,
                   [{field: f"writer {i}"} for i in range(WRITERS)])

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [412] * (WRITERS - 1), codes
    winner = next(a for a in answers if a.status_code == 200)
    for loser in (a for a in answers if a.status_code == 412):
        assert loser.json().get("current_version") == version + 1, loser.json()
    # The stored value is the winner's, and only one change was logged.
    title = winner.json()[field] if kind != "stage" else next(
        st["name"] for st in winner.json()["stages"] if path.endswith(st["id"]))
    assert title.startswith("writer ")
    log = api.get(f"/plans/{mine['id']}/activity").json["items"]
    assert sum(1 for e in log if e["action"] == f"{kind}.updated") == 1


def test_different_milestones_of_one_plan_edited_at_once_all_win(app, client, server):
    api = make_api(app, client, "racers")
    mine = api.post("/plans", json={"title": "Race", "template": "enterprise"}).json
    ms = [m for st in mine["stages"] for m in st["milestones"]][:8]
    barrier = threading.Barrier(len(ms))
    codes = []

    def writer(m):
        barrier.wait()
        codes.append(requests.patch(f"{server}/api/v1/milestones/{m['id']}", timeout=60,
                                    json={"status": "done"}, headers={
                                        "Authorization": f"Bearer {api.key}",
                                        "If-Match": f'"{m["version"]}"'}).status_code)

    threads = [threading.Thread(target=writer, args=(m,)) for m in ms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * len(ms)
    assert api.get(f"/plans/{mine['id']}").json["progress"]["done"] == len(ms)


def _interleaved(monkeypatch, module, name: str, server: str, key: str, path: str, version: int):
    """Make module.<name> (a step of a delete) run right after another request, over real
    HTTP, has committed a PATCH of `path` with If-Match `version`: the race, made
    deterministic."""
    original = getattr(module, name)
    seen = {}

    def late(*args, **kwargs):
        seen["patch"] = requests.patch(f"{server}/api/v1{path}", json={"title": "Won"}, timeout=60,
                                       headers={"Authorization": f"Bearer {key}",
                                                "If-Match": f'"{version}"'})
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, late)
    return seen


@pytest.mark.parametrize("kind", ["milestone", "stakeholder"])
def test_a_delete_that_lost_the_race_to_an_edit_answers_412_with_current_version(
        app, client, server, monkeypatch, kind):
    """The DELETE read version v, then an edit with If-Match v committed: the DELETE's
    `... WHERE version = v` matches no row (SQLAlchemy's StaleDataError), and the answer
    names the version that won."""
    api = make_api(app, client, "racers")
    mine = api.post("/plans", json={"title": "Race", "template": "quick"}).json
    path, version, _ = _resources(api, mine)[kind]
    seen = _interleaved(monkeypatch, plans, f"delete_{kind}", server, api.key, path, version)
    answer = api.delete(path, headers={"If-Match": f'"{version}"'})
    assert seen["patch"].status_code == 200
    assert answer.status_code == 412, answer.json
    assert answer.json["current_version"] == version + 1
    assert api.get(path).status_code == 200 if kind == "milestone" else True  # still there


def test_a_delete_whose_sibling_renumbering_lost_a_race_answers_412_with_current_version(
        app, client, server, monkeypatch):
    """Deleting a milestone renumbers the milestones after it, each UPDATE conditional on the
    version read; a sibling edited meanwhile makes that UPDATE match nothing. The 412 names
    the deleted milestone's current version (unchanged: sending it again succeeds)."""
    api = make_api(app, client, "racers")
    mine = api.post("/plans", json={"title": "Race", "template": "enterprise"}).json
    first, sibling = mine["stages"][0]["milestones"][:2]
    # the PATCH commits after the delete has read the siblings it renumbers
    seen = _interleaved(monkeypatch, dependencies, "forget", server, api.key,
                        f"/milestones/{sibling['id']}", sibling["version"])
    path = f"/milestones/{first['id']}"
    answer = api.delete(path, headers={"If-Match": f'"{first["version"]}"'})
    assert seen["patch"].status_code == 200
    assert answer.status_code == 412, answer.json
    assert answer.json["current_version"] == first["version"]
    monkeypatch.undo()
    assert api.delete(path, headers={"If-Match": f'"{first["version"]}"'}).status_code == 204


def test_a_malformed_if_match_answers_412_with_current_version(app, client):
    api = make_api(app, client, "racers")
    m = api.post("/plans", json={"title": "Race", "template": "quick"}).json["stages"][0]["milestones"][0]
    answer = api.patch(f"/milestones/{m['id']}", json={"title": "x"}, headers={"If-Match": "7"})
    assert answer.status_code == 412 and answer.json["current_version"] == m["version"]
