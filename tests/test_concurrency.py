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
