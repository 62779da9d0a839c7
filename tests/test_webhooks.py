"""Outgoing webhooks end to end: real HTTP and HTTPS receivers on loopback, signatures checked
by the receiver's own implementation of the Standard Webhooks scheme, retries and the 24-hour
limit on a moved clock, replay, SSRF refusals, and DNS pinning against a fake resolver."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from conftest import TODAY, milestone, path_of
from sqlalchemy import select

from webapp import notifications, outbound, plans, sharing, view_counter, webhooks
from webapp.db import session
from webapp.models import WebhookDelivery, WebhookEndpoint

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PUBLIC = "93.184.216.34"  # any global address: the fake DNS answers it, nothing connects to it


# ---- the receiving side -----------------------------------------------------------------------


def verify(secret: str, headers: dict, body: bytes, now: int, tolerance: int = 300) -> dict:
    """A receiver's check, written from the spec text (not webapp.webhooks.sign)."""
    msg_id, stamp, signatures = (headers["webhook-id"], headers["webhook-timestamp"],
                                 headers["webhook-signature"])
    if abs(now - int(stamp)) > tolerance:
        raise ValueError("timestamp outside tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise ValueError("no valid signature")


class Receiver:
    """A real HTTP(S) server on loopback that records requests and answers `statuses` in turn
    (then 200)."""

    def __init__(self, host="127.0.0.1", port=0, tls: ssl.SSLContext | None = None):
        self.requests, self.statuses, self.sni = [], [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"path": self.path, "body": body,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class FakeDNS:
    """OUTBOUND_RESOLVER: names to answers; a list of answers is used one per lookup (the last
    repeats), which is how a rebinding attacker's DNS behaves."""

    def __init__(self):
        self.names, self.calls = {}, []

    def __call__(self, host, port):
        self.calls.append(host)
        answers = self.names.get(host)
        if answers is None:
            raise OSError("NXDOMAIN")
        if answers and isinstance(answers[0], list):
            return answers.pop(0) if len(answers) > 1 else answers[0]
        return answers


@pytest.fixture
def dns():
    return FakeDNS()


@pytest.fixture
def clock_box():
    return {"now": NOW}


@pytest.fixture
def app_config(dns, clock_box):
    return {"OUTBOUND_RESOLVER": dns, "CLOCK": lambda: clock_box["now"],
            "WEBHOOK_ALLOW_HTTP_LOOPBACK": True, "WEBHOOK_CONNECT_TIMEOUT": 2.0,
            "WEBHOOK_READ_TIMEOUT": 2.0}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _register(api, url, events=("plan.updated",), **extra):
    response = api.post("/webhooks", json={"url": url, "events": list(events), **extra})
    assert response.status_code == 201, response.json
    return response.json


def _deliver(app):
    with app.app_context():
        return webhooks.deliver(session())


def _rows(app, **where):
    with app.app_context():
        query = select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        for field, value in where.items():
            query = query.where(getattr(WebhookDelivery, field) == value)
        rows = session().scalars(query).all()
        session().expunge_all()
        return rows


def _stamp(clock_box) -> int:
    return int(clock_box["now"].timestamp())


# ---- delivery and signature ------------------------------------------------------------------


def test_a_plan_change_is_delivered_by_the_worker_signed_as_standard_webhooks(
        app, api, plan, receiver, clock_box):
    hook = _register(api, f"http://127.0.0.1:{receiver.port}/in?x=1", allow_private=True)
    assert hook["secret"].startswith("whsec_") and len(base64.b64decode(hook["secret"][6:])) == 32
    assert "secret" not in api.get(f"/webhooks/{hook['id']}").json  # shown once
    assert api.patch(f"/plans/{plan['id']}", json={"title": "Renamed"}).status_code == 200
    assert receiver.requests == []  # never inside the request: a worker sends it
    assert ("webhooks", ()) in app.extensions["mutualplan.jobs"]["queued"]  # kicked after commit
    assert _deliver(app) == 1
    [request] = receiver.requests
    event = verify(hook["secret"], request["headers"], request["body"], _stamp(clock_box))
    assert event["type"] == "plan.updated" and event["data"]["plan"]["id"] == plan["id"]
    assert event["data"]["plan"]["title"] == "Renamed" and event["data"]["change"] == "plan.updated"
    assert request["headers"]["webhook-id"].startswith("msg_")
    assert request["headers"]["host"] == f"127.0.0.1:{receiver.port}" and request["path"] == "/in?x=1"
    with pytest.raises(ValueError):  # a tampered body fails the receiver's check
        verify(hook["secret"], request["headers"], request["body"].replace(b"Renamed", b"Renamee"),
               _stamp(clock_box))
    [row] = api.get(f"/webhooks/{hook['id']}/deliveries").json["items"]
    assert (row["status"], row["response_code"], row["attempts"]) == ("delivered", 200, 1)
    assert _deliver(app) == 0


def test_https_keeps_sni_and_host_while_connecting_to_the_pinned_address(
        app, api, plan, dns, clock_box, tmp_path):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(context)  # valid for the name, not for 127.0.0.1
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    app.config["WEBHOOK_CA_BUNDLE"] = str(tmp_path / "ca.pem")
    server = Receiver(tls=context)
    try:
        dns.names["hooks.test"] = ["127.0.0.1"]
        hook = _register(api, f"https://hooks.test:{server.port}/mp", allow_private=True)
        api.patch(f"/plans/{plan['id']}", json={"title": "Over TLS"})
        assert _deliver(app) == 1
        [request] = server.requests
        assert server.sni == ["hooks.test"]
        assert request["headers"]["host"] == f"hooks.test:{server.port}"
        verify(hook["secret"], request["headers"], request["body"], _stamp(clock_box))
    finally:
        server.stop()


def test_a_500_is_retried_with_backoff_under_the_same_webhook_id(app, api, plan, receiver, clock_box):
    hook = _register(api, f"http://127.0.0.1:{receiver.port}/in", allow_private=True)
    receiver.statuses = [500]
    api.patch(f"/plans/{plan['id']}", json={"title": "Retry me"})
    assert _deliver(app) == 0
    [row] = _rows(app)
    assert (row.status, row.response_code, row.attempts, row.last_error) == ("pending", 500, 1, "HTTP 500")
    assert row.next_attempt_at > clock_box["now"]
    assert _deliver(app) == 0 and len(receiver.requests) == 1  # not due yet
    clock_box["now"] = row.next_attempt_at
    assert _deliver(app) == 1
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["body"] == second["body"]
    verify(hook["secret"], second["headers"], second["body"], _stamp(clock_box))
    [row] = _rows(app)
    assert (row.status, row.attempts, row.response_code) == ("delivered", 2, 200)


def test_failures_back_off_exponentially_and_give_up_after_24_hours(app, api, plan, receiver, clock_box):
    _register(api, f"http://127.0.0.1:{receiver.port}/in", allow_private=True)
    receiver.statuses = [503] * 100
    api.patch(f"/plans/{plan['id']}", json={"title": "Down"})
    start, gaps = clock_box["now"], []
    while True:
        _deliver(app)
        [row] = _rows(app)
        if row.status != "pending":
            break
        gaps.append((row.next_attempt_at - clock_box["now"]).total_seconds())
        clock_box["now"] = row.next_attempt_at
    assert row.status == "failed" and "24 hours" in row.last_error
    assert clock_box["now"] - start <= timedelta(hours=24)
    assert all(b > a for a, b in zip(gaps, gaps[1:4], strict=False))  # growing waits
    assert len(receiver.requests) == row.attempts and 6 <= row.attempts <= 16


def test_replay_sends_the_same_message_again_with_a_new_signature(app, api, plan, receiver, clock_box):
    hook = _register(api, f"http://127.0.0.1:{receiver.port}/in", allow_private=True)
    api.patch(f"/plans/{plan['id']}", json={"title": "Once"})
    _deliver(app)
    [row] = api.get(f"/webhooks/{hook['id']}/deliveries").json["items"]
    clock_box["now"] += timedelta(hours=30)
    other = _register(api, f"http://127.0.0.1:{receiver.port}/other", allow_private=True,
                      events=["buyer.viewed"])
    assert api.post(f"/webhooks/{other['id']}/deliveries/{row['id']}/replay").status_code == 404
    response = api.post(f"/webhooks/{hook['id']}/deliveries/{row['id']}/replay")
    assert response.status_code == 202 and response.json["status"] == "pending"
    again = api.post(f"/webhooks/{hook['id']}/deliveries/{row['id']}/replay")
    assert again.status_code == 409  # queued already
    assert _deliver(app) == 1
    first, second = receiver.requests
    assert second["headers"]["webhook-id"] == first["headers"]["webhook-id"] == row["msg_id"]
    assert second["headers"]["webhook-timestamp"] != first["headers"]["webhook-timestamp"]
    verify(hook["secret"], second["headers"], second["body"], _stamp(clock_box))


def test_redirects_are_not_followed_and_410_disables_the_endpoint(app, api, plan, receiver):
    hook = _register(api, f"http://127.0.0.1:{receiver.port}/in", allow_private=True)
    receiver.statuses = [302, 410]
    api.patch(f"/plans/{plan['id']}", json={"title": "A"})
    _deliver(app)
    [row] = _rows(app)
    assert (row.status, row.response_code) == ("pending", 302) and len(receiver.requests) == 1
    with app.app_context():  # due now: the retry gets the 410
        s = session()
        s.get(WebhookDelivery, row.id).next_attempt_at = NOW
        s.commit()
    _deliver(app)
    [row] = _rows(app)
    assert (row.status, row.response_code) == ("failed", 410)
    endpoint = api.get(f"/webhooks/{hook['id']}").json
    assert endpoint["active"] is False and "410" in endpoint["disabled_reason"]
    api.patch(f"/plans/{plan['id']}", json={"title": "B"})
    assert len(_rows(app)) == 1  # a disabled endpoint gets nothing new


# ---- events ---------------------------------------------------------------------------------


def test_events_are_queued_in_the_changes_transaction_and_filtered_per_endpoint(
        app, api, plan, client, receiver):
    all_events = _register(api, f"http://127.0.0.1:{receiver.port}/all", allow_private=True,
                           events=list(webhooks.EVENTS))
    comments = _register(api, f"http://127.0.0.1:{receiver.port}/comments", allow_private=True,
                         events=["buyer.commented"])
    m = milestone(plan, "Identify problems to solve")
    with app.app_context():
        s = session()
        p = plans.get_plan(s, s.get(WebhookEndpoint, all_events["id"]).tenant_id, plan["id"])
        buyer = sharing.Buyer("Dana", "dana@buyer.example")
        sharing.add_comment(s, p, sharing.visible_milestone(p, m["id"]), "Looks good", side="buyer",
                            name=buyer.name, email=buyer.email, actor=buyer.actor)
        s.rollback()  # a change that is not committed sends nothing
        assert s.scalars(select(WebhookDelivery)).all() == []
        sharing.add_comment(s, p, sharing.visible_milestone(p, m["id"]), "Looks good", side="buyer",
                            name=buyer.name, email=buyer.email, actor=buyer.actor)
        sharing.propose_date(s, p, sharing.visible_milestone(p, m["id"]), TODAY + timedelta(days=40),
                             "Board meets later", buyer, None, TODAY)
        s.commit()
    assert api.patch(f"/milestones/{m['id']}", json={"status": "done"}).status_code == 200
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    assert client.get(path_of(link["url"])).status_code == 200
    assert client.get(path_of(link["url"])).status_code == 200  # the same viewer within the hour
    with app.app_context():
        view_counter.flush()  # views are buffered; the flush sends buyer.viewed
    kinds = [(r.endpoint_id, r.event_type) for r in _rows(app)]
    mine = [t for e, t in kinds if e == all_events["id"]]
    assert mine.count("buyer.commented") == 1 and mine.count("milestone.date_proposed") == 1
    assert mine.count("milestone.completed") == 1 and mine.count("buyer.viewed") == 1
    assert "plan.updated" in mine
    assert [t for e, t in kinds if e == comments["id"]] == ["buyer.commented"]
    _deliver(app)
    by_type = {json.loads(r["body"])["type"]: json.loads(r["body"])["data"]
               for r in receiver.requests if r["path"] == "/all"}
    assert by_type["buyer.commented"]["buyer"] == {"name": "Dana", "email": "dana@buyer.example"}
    assert by_type["buyer.commented"]["comment"]["excerpt"] == "Looks good"
    assert by_type["milestone.date_proposed"]["proposal"]["to"] == (TODAY + timedelta(days=40)).isoformat()
    assert by_type["milestone.completed"]["milestone"]["status"] == "done"
    assert by_type["buyer.viewed"]["plan"]["id"] == plan["id"]


# ---- SSRF and DNS pinning --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://127.0.0.1/hook", "https://10.1.2.3/hook",
                                 "https://169.254.169.254/latest/meta-data", "https://[::1]/hook",
                                 "https://internal.test/hook", "https://[::ffff:127.0.0.1]/hook",
                                 "https://224.0.0.1/hook", "http://hooks.test/hook",
                                 "https://nowhere.test/hook", "ftp://hooks.test/x"])
def test_private_targets_are_refused_without_the_flag(app, api, dns, url):
    dns.names.update({"internal.test": ["10.20.30.40"], "hooks.test": [PUBLIC]})
    response = api.post("/webhooks", json={"url": url, "events": ["plan.updated"]})
    assert response.status_code == 422, url
    assert response.json["errors"][0]["field"] == "url"
    assert api.get("/webhooks").json["items"] == []


def test_a_hostname_resolving_to_any_private_address_is_refused(app, dns):
    dns.names["mixed.test"] = [PUBLIC, "192.168.1.10"]
    with app.app_context():
        with pytest.raises(outbound.Refused):
            outbound.pin("https://mixed.test/")
        assert outbound.pin("https://mixed.test/", allow_private=True).address == PUBLIC


def test_private_targets_need_the_endpoints_own_flag(app, api, dns):
    dns.names["internal.test"] = ["10.20.30.40"]
    hook = _register(api, "https://internal.test/hook", allow_private=True)
    assert hook["allow_private"] is True
    response = api.patch(f"/webhooks/{hook['id']}", json={"allow_private": False})
    assert response.status_code == 422
    assert api.get(f"/webhooks/{hook['id']}").json["allow_private"] is True


def test_dns_that_turns_private_after_registration_is_refused_at_delivery(app, api, plan, dns):
    dns.names["hooks.test"] = [PUBLIC]
    hook = _register(api, "https://hooks.test/in")
    dns.names["hooks.test"] = ["169.254.169.254"]
    api.patch(f"/plans/{plan['id']}", json={"title": "Moved"})
    assert _deliver(app) == 0
    [row] = api.get(f"/webhooks/{hook['id']}/deliveries").json["items"]
    assert row["status"] == "failed" and row["last_error"].startswith("refused")
    assert row["response_code"] is None


def test_rebinding_between_check_and_connect_cannot_move_the_request(app, api, plan, dns):
    """The resolver answers one address for the check and another afterwards: the request
    goes to the address that was checked, and the name is looked up once per attempt."""
    checked = Receiver("127.0.0.1")
    rebound = Receiver("127.0.0.2", port=checked.port)  # same port, another loopback address
    try:
        dns.names["rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]
        _register(api, f"http://rebind.test:{checked.port}/in", allow_private=True)
        dns.names["rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]  # the registration used one
        dns.calls.clear()
        api.patch(f"/plans/{plan['id']}", json={"title": "Pinned"})
        assert _deliver(app) == 1
        assert len(checked.requests) == 1 and rebound.requests == []
        assert dns.calls == ["rebind.test"]
        assert checked.requests[0]["headers"]["host"] == f"rebind.test:{checked.port}"
    finally:
        checked.stop()
        rebound.stop()


def test_rebinding_from_public_to_private_is_pinned_to_the_checked_address(app, dns):
    dns.names["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with app.app_context():
        target = outbound.pin("https://rebind.test/hook")
    assert (target.address, target.host, dns.calls) == (PUBLIC, "rebind.test", ["rebind.test"])


def test_the_slack_guard_is_the_same_pinned_check(app, dns):
    app.config["NOTIFY_ALLOW_PRIVATE_URLS"] = False
    dns.names.update({"hooks.slack.test": ["10.0.0.8"], "public.slack.test": [PUBLIC]})
    with app.app_context():
        with pytest.raises(notifications.Invalid):
            notifications.check_webhook_url("https://hooks.slack.test/services/x")
        target = notifications.check_webhook_url("https://public.slack.test/services/x")
    assert target.address == PUBLIC and dns.calls == ["hooks.slack.test", "public.slack.test"]


# ---- the API's edges and the admins' page ----------------------------------------------------


def test_api_validates_and_keeps_tenants_apart(app, api, other_api, receiver):
    assert api.post("/webhooks", json={"url": "https://x.test/", "events": []}).status_code == 422
    assert api.post("/webhooks", json={"url": "https://x.test/", "events": ["plan.nope"]}).status_code == 422
    assert api.post("/webhooks", json={"url": "https://x.test/", "events": ["plan.updated"],
                                       "extra": 1}).status_code == 422
    hook = _register(api, f"http://127.0.0.1:{receiver.port}/in", allow_private=True)
    assert other_api.get(f"/webhooks/{hook['id']}").status_code == 404
    assert other_api.delete(f"/webhooks/{hook['id']}").status_code == 404
    assert other_api.get(f"/webhooks/{hook['id']}/deliveries").status_code == 404
    assert api.get(f"/webhooks/{hook['id']}/deliveries?status=lost").status_code == 422
    paused = api.patch(f"/webhooks/{hook['id']}", json={"active": False, "events": ["buyer.viewed"]})
    assert paused.status_code == 200 and paused.json["events"] == ["buyer.viewed"]
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204
    assert api.get("/webhooks").json["items"] == []


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def test_settings_page_adds_shows_the_secret_once_logs_replays_and_deletes(
        app, client, sign_in, receiver):
    sign_in(role="rep")
    assert client.get("/settings/webhooks").status_code == 403
    sign_in(role="admin")
    page = client.get("/settings/webhooks")
    assert page.status_code == 200 and "No endpoints yet" in page.text
    csrf = CSRF.search(page.text).group(1)
    form = {"url": f"http://127.0.0.1:{receiver.port}/in", "events": ["plan.updated"]}
    assert client.post("/settings/webhooks", data=form).status_code == 403  # no CSRF token
    refused = client.post("/settings/webhooks", data={**form, "csrf": csrf})
    assert refused.status_code == 422 and "private" in refused.text  # loopback needs the flag
    added = client.post("/settings/webhooks", data={**form, "csrf": csrf, "allow_private": "1"})
    assert added.status_code == 201
    secret = re.search(r'value="(whsec_[^"]+)"', added.text).group(1)
    assert secret not in client.get("/settings/webhooks").text
    with app.app_context():
        s = session()
        endpoint = s.scalars(select(WebhookEndpoint)).one()
        webhooks.fire(s, endpoint.tenant_id, "plan.updated", {"plan": {"id": "p1"}})
        s.commit()
        endpoint_id = endpoint.id
    _deliver(app)
    verify(secret, receiver.requests[0]["headers"], receiver.requests[0]["body"],
           int(NOW.timestamp()))
    log = client.get(f"/settings/webhooks/{endpoint_id}")
    assert log.status_code == 200 and "delivered" in log.text
    [delivery] = _rows(app)
    replayed = client.post(f"/settings/webhooks/{endpoint_id}/deliveries/{delivery.id}/replay",
                           data={"csrf": csrf})
    assert replayed.status_code == 303
    _deliver(app)
    assert len(receiver.requests) == 2
    assert client.post(f"/settings/webhooks/{endpoint_id}/delete", data={"csrf": csrf}).status_code == 303
    assert "No endpoints yet" in client.get("/settings/webhooks").text


def test_signing_secrets_are_encrypted_at_rest_and_rotate_with_the_token_keys(app, api, receiver):
    from cryptography.fernet import Fernet

    from webapp import installations

    hook = _register(api, f"http://127.0.0.1:{receiver.port}/in", allow_private=True)
    with app.app_context():
        s = session()
        stored = s.get(WebhookEndpoint, hook["id"]).secret
        assert hook["secret"] not in stored
        new_key = Fernet.generate_key().decode()
        app.config["TOKEN_ENCRYPTION_KEYS"] = f"{new_key},{app.config['TOKEN_ENCRYPTION_KEYS']}"
        app.extensions.pop("mutualplan.cipher", None)
        installations.rotate_keys(s)
        row = s.get(WebhookEndpoint, hook["id"])
        assert row.secret != stored
        assert Fernet(new_key.encode()).decrypt(row.secret.encode()).decode() == hook["secret"]


def test_an_unreachable_first_address_falls_back_to_the_next_checked_one(app, api, plan, dns, receiver):
    dns.names["two.test"] = ["127.0.0.3", "127.0.0.1"]  # nothing listens on 127.0.0.3
    _register(api, f"http://two.test:{receiver.port}/in", allow_private=True)
    api.patch(f"/plans/{plan['id']}", json={"title": "Second address"})
    assert _deliver(app) == 1 and len(receiver.requests) == 1
