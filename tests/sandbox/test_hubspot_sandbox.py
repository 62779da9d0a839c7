"""The HubSpot sandbox, exercised over real HTTP with the real hubspot-api-client 12 SDK."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiPost,
    PublicAssociationMultiPost,
    PublicObjectId,
)
from hubspot.crm.deals import SimplePublicObjectInput as DealInput
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import BatchInputPropertyCreate, PropertyCreate, PropertyGroupCreate
from hubspot.crm.schemas import (
    ObjectSchemaEgg,
    ObjectTypeDefinitionLabels,
    ObjectTypePropertyCreate,
)
from urllib3.util.retry import Retry
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandboxes.hubspot import DEFAULT_DEAL_STAGES, HubSpotSandbox, serve, sign_v1, sign_v3

ENT, PRO = 100001, 100002
REDIRECT = "http://localhost:5000/oauth/hubspot/callback"
SCOPES = [
    "oauth",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
]
CUSTOM = [
    "crm.objects.custom.read",
    "crm.objects.custom.write",
    "crm.schemas.custom.read",
    "crm.schemas.custom.write",
]


# ---------------------------------------------------------------------------------------------
# fixtures


def client(server, token: str) -> HubSpot:
    """How the connector should build the SDK: sandbox URL as host, the SDK's own retries off."""
    return HubSpot(access_token=token, host=server.url, retry=Retry(total=0, redirect=0))


def status_of(exc_info) -> int:
    return exc_info.value.status


def body_of(exc_info) -> dict:
    return json.loads(exc_info.value.body)


def map_schema_egg(name="mutual_action_plan", associated=("DEAL",)):
    return ObjectSchemaEgg(
        name=name,
        description="Mutual action plan for a deal",
        labels=ObjectTypeDefinitionLabels(
            singular="Mutual Action Plan", plural="Mutual Action Plans"
        ),
        primary_display_property="map_name",
        secondary_display_properties=["map_status"],
        searchable_properties=["map_name", "map_external_id"],
        required_properties=["map_name", "map_external_id"],
        properties=[
            ObjectTypePropertyCreate(
                name="map_name", label="Plan name", type="string", field_type="text"
            ),
            ObjectTypePropertyCreate(
                name="map_external_id",
                label="External ID",
                type="string",
                field_type="text",
                has_unique_value=True,
            ),
            ObjectTypePropertyCreate(
                name="map_status",
                label="Status",
                type="enumeration",
                field_type="select",
                options=[
                    {"label": "Active", "value": "active", "displayOrder": 0, "hidden": False},
                    {"label": "Complete", "value": "complete", "displayOrder": 1, "hidden": False},
                ],
            ),
        ],
        associated_objects=list(associated),
    )


@pytest.fixture
def map_schema(ent):
    return ent.crm.schemas.core_api.create(object_schema_egg=map_schema_egg())


def upsert(api, type_id, items):
    return api.crm.objects.batch_api.upsert(
        type_id,
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id=i, id_property="map_external_id", properties=p
                )
                for i, p in items
            ]
        ),
    )


def search_req(**kw):
    base = {"filter_groups": [], "sorts": [], "properties": [], "limit": 10, "after": "0"}
    base.update(kw)
    return PublicObjectSearchRequest(**base)


class Receiver:
    """A tiny HTTP server standing in for our backend: records every request it gets."""

    def __init__(self, statuses=()):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        self._srv = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._srv.server_port}"
        threading.Thread(target=self._srv.serve_forever, args=(0.05,), daemon=True).start()

    def _app(self, environ, start_response):
        req = Request(environ)
        self.requests.append(
            {
                "method": req.method,
                "url": req.url,
                "headers": dict(req.headers),
                "body": req.get_data(),
                "args": req.args.to_dict(),
            }
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(json.dumps({"ok": True}), status=status, content_type="application/json")(
            environ, start_response
        )

    def close(self):
        self._srv.shutdown()
        self._srv.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


# An independent re-implementation of HubSpot's v3 rule (not the sandbox's code).
def verify_v3(method, url, body: bytes, secret, headers, now_ms=None):
    ts = headers["X-Hubspot-Request-Timestamp"]
    if abs((now_ms or int(time.time() * 1000)) - int(ts)) > 300_000:
        return False
    for enc, dec in (
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ):
        url = url.replace(enc, dec).replace(enc.lower(), dec)
    raw = f"{method}{url}".encode() + body + ts.encode()
    expected = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, headers["X-Hubspot-Signature-V3"])


# ---------------------------------------------------------------------------------------------
# OAuth


def consent(server, app, scope, optional="", state="st-1", action="connect", portal=ENT):
    page = requests.get(
        f"{server.url}/oauth/authorize",
        params={
            "client_id": app.client_id,
            "redirect_uri": REDIRECT,
            "scope": scope,
            "optional_scope": optional,
            "state": state,
        },
    )
    form = {
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "optional_scope": optional,
        "state": state,
        "portal_id": str(portal),
        "action": action,
    }
    return page, requests.post(f"{server.url}/oauth/authorize", data=form, allow_redirects=False)


def test_oauth_code_exchange_metadata_refresh_and_revoke(sb, server, hs_app):
    page, resp = consent(server, hs_app, " ".join(SCOPES))
    assert page.status_code == 200
    assert "crm.objects.deals.write" in page.text and "Connect app" in page.text
    assert "Acme Enterprise" in page.text and "Globex Pro" in page.text
    assert resp.status_code == 302
    loc = urllib.parse.urlsplit(resp.headers["Location"])
    q = urllib.parse.parse_qs(loc.query)
    assert loc.path == "/oauth/hubspot/callback" and q["state"] == ["st-1"]

    api = HubSpot(host=server.url, retry=Retry(total=0))
    tokens = api.oauth.tokens_api.create(
        grant_type="authorization_code",
        code=q["code"][0],
        redirect_uri=REDIRECT,
        client_id=hs_app.client_id,
        client_secret=hs_app.client_secret,
    )
    assert tokens.expires_in == 1800 and tokens.token_type == "bearer"

    info = api.oauth.access_tokens_api.get(token=tokens.access_token)
    assert info.hub_id == ENT and info.app_id == hs_app.app_id
    assert set(SCOPES) <= set(info.scopes) and info.user and info.user_id
    assert info.hub_domain and 0 < info.expires_in <= 1800

    # the raw JSON is snake_case and carries hub_id/scopes (the SDK model drops them)
    raw = requests.post(
        f"{server.url}/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": hs_app.client_id,
            "client_secret": hs_app.client_secret,
            "refresh_token": tokens.refresh_token,
        },
    ).json()
    assert raw["hub_id"] == ENT and raw["expires_in"] == 1800 and "oauth" in raw["scopes"]
    assert raw["refresh_token"] == tokens.refresh_token and raw["access_token"]

    refreshed = api.oauth.tokens_api.create(
        grant_type="refresh_token",
        refresh_token=tokens.refresh_token,
        client_id=hs_app.client_id,
        client_secret=hs_app.client_secret,
    )
    assert refreshed.access_token != tokens.access_token

    # a used code is gone
    with pytest.raises(Exception) as e:
        api.oauth.tokens_api.create(
            grant_type="authorization_code",
            code=q["code"][0],
            redirect_uri=REDIRECT,
            client_id=hs_app.client_id,
            client_secret=hs_app.client_secret,
        )
    assert status_of(e) == 400 and body_of(e)["error"] == "invalid_grant"

    api.oauth.refresh_tokens_api.archive(token=tokens.refresh_token)
    with pytest.raises(Exception) as e:
        api.oauth.tokens_api.create(
            grant_type="refresh_token",
            refresh_token=tokens.refresh_token,
            client_id=hs_app.client_id,
            client_secret=hs_app.client_secret,
        )
    assert status_of(e) == 400
    body = body_of(e)
    assert body["error"] == "invalid_grant" and body["status"] == "BAD_REFRESH_TOKEN"
    assert sb.call_counts(ENT)["POST /oauth/v1/token"] >= 3
    sb.assert_no_contract_violations()


def test_oauth_deny_redirects_with_access_denied(server, hs_app):
    _page, resp = consent(server, hs_app, "oauth", action="deny", state="s9")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)
    assert resp.status_code == 302 and q["error"] == ["access_denied"] and q["state"] == ["s9"]
    assert "code" not in q


def test_expired_access_token_answers_401_expired_authentication(sb, server):
    tok = sb.issue_tokens(ENT)
    api = client(server, tok["access_token"])
    api.crm.deals.basic_api.get_page(limit=1)
    sb.advance(1801)
    with pytest.raises(Exception) as e:
        api.crm.deals.basic_api.get_page(limit=1)
    assert status_of(e) == 401 and body_of(e)["category"] == "EXPIRED_AUTHENTICATION"
    assert "expired" in body_of(e)["message"]
    # refreshing gives a working token again
    fresh = requests.post(
        f"{server.url}/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "sandbox-client-id",
            "client_secret": "sandbox-client-secret",
            "refresh_token": tok["refresh_token"],
        },
    ).json()
    assert client(server, fresh["access_token"]).crm.deals.basic_api.get_page(limit=1).results


def test_uninstall_makes_refresh_fail_with_invalid_grant(sb, server, hs_app):
    tok = sb.issue_tokens(ENT)
    requests.delete(
        f"{server.url}/appinstalls/v3/external-install",
        headers={"Authorization": f"Bearer {tok['access_token']}"},
    ).raise_for_status()
    r = requests.post(
        f"{server.url}/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": hs_app.client_id,
            "client_secret": hs_app.client_secret,
            "refresh_token": tok["refresh_token"],
        },
    )
    assert r.status_code == 400 and r.json()["status"] == "BAD_REFRESH_TOKEN"


# ---------------------------------------------------------------------------------------------
# custom objects: Enterprise vs Professional


def test_schema_creation_on_enterprise(sb, ent, map_schema):
    s = map_schema
    assert s.object_type_id.startswith("2-")
    assert s.fully_qualified_name == f"p{ENT}_mutual_action_plan"
    assert s.associations and s.associations[0].id and s.associations[0].to_object_type_id == "0-3"
    uniq = {p.name: p.has_unique_value for p in s.properties}
    assert uniq["map_external_id"] is True and uniq["map_name"] is False
    # readable by 2-<n>, p_<name> and p<portal>_<name>
    for ident in (s.object_type_id, "p_mutual_action_plan", s.fully_qualified_name):
        assert (
            ent.crm.schemas.core_api.get_by_id(object_type=ident).object_type_id == s.object_type_id
        )
    assert [x.name for x in ent.crm.schemas.core_api.get_all().results] == ["mutual_action_plan"]
    with pytest.raises(Exception) as e:
        ent.crm.schemas.core_api.create(object_schema_egg=map_schema_egg())
    assert status_of(e) == 409
    # a milestone schema associated to the plan type (custom -> custom)
    ms = ent.crm.schemas.core_api.create(
        object_schema_egg=map_schema_egg("map_milestone", associated=[s.object_type_id])
    )
    assert ms.associations[0].to_object_type_id == s.object_type_id
    sb.assert_no_contract_violations()


def test_professional_portal_gets_no_custom_objects(sb, server, hs_app):
    # custom scopes asked as optional are dropped on a non-Enterprise account
    _page, resp = consent(server, hs_app, " ".join(SCOPES), optional=" ".join(CUSTOM), portal=PRO)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)["code"][0]
    tok = requests.post(
        f"{server.url}/oauth/v1/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": hs_app.client_id,
            "client_secret": hs_app.client_secret,
        },
    ).json()
    assert tok["hub_id"] == PRO and not set(CUSTOM) & set(tok["scopes"])
    api = client(server, tok["access_token"])
    with pytest.raises(Exception) as e:
        api.crm.schemas.core_api.create(object_schema_egg=map_schema_egg())
    assert status_of(e) == 403 and body_of(e)["category"] == "MISSING_SCOPES"
    # even with the scope, a Professional portal cannot create schemas
    api2 = client(server, sb.issue_tokens(PRO, scopes=SCOPES + CUSTOM)["access_token"])
    with pytest.raises(Exception) as e:
        api2.crm.schemas.core_api.create(object_schema_egg=map_schema_egg())
    assert status_of(e) == 403 and "Enterprise" in body_of(e)["message"]
    # deal-properties mode works there
    api2.crm.properties.groups_api.create(
        "deals", PropertyGroupCreate(name="mutual_action_plan", label="Mutual Action Plan")
    )
    # custom scopes asked as *required* make the install fail on the consent page
    _page, resp = consent(server, hs_app, " ".join(SCOPES + CUSTOM), portal=PRO)
    assert resp.status_code == 400 and "Enterprise" in resp.text
    sb.assert_no_contract_violations()


# ---------------------------------------------------------------------------------------------
# properties


def test_property_groups_and_properties(sb, ent):
    props = ent.crm.properties
    props.groups_api.create(
        "deals", PropertyGroupCreate(name="mutual_action_plan", label="Mutual Action Plan")
    )
    with pytest.raises(Exception) as e:
        props.groups_api.create(
            "deals", PropertyGroupCreate(name="mutual_action_plan", label="again")
        )
    assert status_of(e) == 409
    p = props.core_api.create(
        "deals",
        PropertyCreate(
            name="map_progress",
            label="MAP progress %",
            type="number",
            field_type="number",
            group_name="mutual_action_plan",
        ),
    )
    assert p.name == "map_progress" and p.group_name == "mutual_action_plan"
    with pytest.raises(Exception) as e:
        props.core_api.create(
            "deals",
            PropertyCreate(
                name="map_progress",
                label="x",
                type="number",
                field_type="number",
                group_name="mutual_action_plan",
            ),
        )
    assert status_of(e) == 409
    batch = BatchInputPropertyCreate(
        inputs=[
            PropertyCreate(
                name="map_progress",
                label="x",
                type="number",
                field_type="number",
                group_name="mutual_action_plan",
            ),
            PropertyCreate(
                name="map_buyer_link",
                label="Buyer link",
                type="string",
                field_type="text",
                group_name="mutual_action_plan",
            ),
        ]
    )
    res = props.batch_api.create("deals", batch)
    assert [r.name for r in res.results] == ["map_buyer_link"] and res.num_errors == 1
    names = {x.name for x in props.core_api.get_all("deals").results}
    assert {"map_progress", "map_buyer_link", "dealstage"} <= names

    deal_id = sb.records(ENT, "deals")[0]["id"]
    ent.crm.deals.basic_api.update(deal_id, DealInput(properties={"map_progress": "40"}))
    assert sb.get_record(ENT, "deals", deal_id)["properties"]["map_progress"] == "40"
    with pytest.raises(Exception) as e:  # writing a property that was never created
        ent.crm.deals.basic_api.update(deal_id, DealInput(properties={"map_risk": "high"}))
    assert status_of(e) == 400 and "PROPERTY_DOESNT_EXIST" in body_of(e)["message"]
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.update(deal_id, DealInput(properties={"map_progress": "lots"}))
    assert status_of(e) == 400
    sb.assert_no_contract_violations()


# ---------------------------------------------------------------------------------------------
# records, upsert, associations


def test_batch_upsert_is_idempotent_by_unique_property(sb, ent, map_schema):
    t = map_schema.object_type_id
    first = upsert(ent, t, [("7b2f-uuid-1", {"map_name": "Acme MAP"})])
    assert first.results[0].new is True
    second = upsert(ent, t, [("7b2f-uuid-1", {"map_name": "Acme MAP v2"})])
    assert second.results[0].new is False and second.results[0].id == first.results[0].id
    recs = sb.records(ENT, t)
    assert len(recs) == 1 and recs[0]["properties"]["map_name"] == "Acme MAP v2"
    assert recs[0]["properties"]["map_external_id"] == "7b2f-uuid-1"
    got = ent.crm.objects.basic_api.get_by_id(
        t, "7b2f-uuid-1", id_property="map_external_id", properties=["map_name"]
    )
    assert got.properties["map_name"] == "Acme MAP v2"

    # idProperty must be a unique-value property
    with pytest.raises(Exception) as e:
        ent.crm.objects.batch_api.upsert(
            t,
            BatchInputSimplePublicObjectBatchInputUpsert(
                inputs=[
                    SimplePublicObjectBatchInputUpsert(
                        id="x", id_property="map_name", properties={"map_name": "x"}
                    )
                ]
            ),
        )
    assert status_of(e) == 400
    # create needs the schema's required properties
    with pytest.raises(Exception) as e:
        upsert(ent, t, [("uuid-2", {"map_status": "active"})])
    assert status_of(e) == 400 and "REQUIRED" in body_of(e)["message"]
    sb.assert_no_contract_violations()


def test_batches_over_100_inputs_are_rejected(sb, ent, map_schema):
    items = [(f"uuid-{i}", {"map_name": f"plan {i}"}) for i in range(101)]
    with pytest.raises(Exception) as e:
        upsert(ent, map_schema.object_type_id, items)
    assert status_of(e) == 400 and body_of(e)["category"] == "VALIDATION_ERROR"
    assert sb.records(ENT, map_schema.object_type_id) == []
    assert len(upsert(ent, map_schema.object_type_id, items[:100]).results) == 100


def test_associations_v4_and_labels(sb, ent, map_schema):
    t = map_schema.object_type_id
    type_id = int(map_schema.associations[0].id)
    plan = upsert(ent, t, [("plan-uuid", {"map_name": "Acme MAP"})]).results[0]
    deal_id = sb.records(ENT, "deals")[0]["id"]

    labels = ent.crm.associations.v4.schema.definitions_api.get_all(t, "deals").results
    assert any(x.type_id == type_id and x.category == "USER_DEFINED" for x in labels)
    inverse = ent.crm.associations.v4.schema.definitions_api.get_all("deals", t).results
    assert inverse and inverse[0].type_id != type_id

    res = ent.crm.associations.v4.batch_api.create(
        t,
        "deals",
        BatchInputPublicAssociationMultiPost(
            inputs=[
                PublicAssociationMultiPost(
                    _from=PublicObjectId(id=plan.id),
                    to=PublicObjectId(id=deal_id),
                    types=[
                        AssociationSpec(
                            association_category="USER_DEFINED", association_type_id=type_id
                        )
                    ],
                )
            ]
        ),
    )
    assert res.results[0].to_object_id == deal_id
    page = ent.crm.associations.v4.basic_api.get_page("deals", deal_id, t)
    assert page.results[0].to_object_id == plan.id
    assert page.results[0].association_types[0].type_id == inverse[0].type_id
    got = ent.crm.objects.basic_api.get_by_id(t, plan.id, associations=["deals"])
    assert got.associations["deals"].results[0].id == deal_id

    with pytest.raises(Exception) as e:  # a type id that is not defined for the pair
        ent.crm.associations.v4.batch_api.create(
            t,
            "deals",
            BatchInputPublicAssociationMultiPost(
                inputs=[
                    PublicAssociationMultiPost(
                        _from=PublicObjectId(id=plan.id),
                        to=PublicObjectId(id=deal_id),
                        types=[
                            AssociationSpec(
                                association_category="USER_DEFINED", association_type_id=99999
                            )
                        ],
                    )
                ]
            ),
        )
    assert status_of(e) == 400

    # inline associations on create
    ms = ent.crm.objects.basic_api.create(
        t,
        SimplePublicObjectInputForCreate(
            properties={"map_name": "Second", "map_external_id": "plan-2"},
            associations=[
                {
                    "to": {"id": deal_id},
                    "types": [
                        {"associationCategory": "USER_DEFINED", "associationTypeId": type_id}
                    ],
                }
            ],
        ),
    )
    assert ms.id in sb.associations(ENT, "deals", deal_id, t)
    sb.assert_no_contract_violations()


# ---------------------------------------------------------------------------------------------
# deals and pipelines


def test_pipelines_have_default_stages_with_string_metadata(sb, ent):
    pipes = ent.crm.pipelines.pipelines_api.get_all(object_type="deals").results
    assert [p.id for p in pipes] == ["default"]
    stages = ent.crm.pipelines.pipeline_stages_api.get_all(
        object_type="deals", pipeline_id="default"
    ).results
    assert [s.id for s in stages] == [s[0] for s in DEFAULT_DEAL_STAGES]
    won = next(s for s in stages if s.id == "closedwon")
    assert won.metadata == {"isClosed": "true", "probability": "1.0"}
    assert stages[0].metadata["probability"] == "0.2"
    sb.assert_no_contract_violations()


def test_deal_patch_validates_stage_against_pipeline(sb, ent):
    sb.add_pipeline(
        ENT,
        "renewals",
        "Renewals",
        [("renewal_open", "Open", "0.5", "false"), ("renewal_won", "Won", "1.0", "true")],
    )
    deal_id = sb.records(ENT, "deals")[0]["id"]
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.update(deal_id, DealInput(properties={"dealstage": "renewal_won"}))
    assert status_of(e) == 400 and body_of(e)["category"] == "VALIDATION_ERROR"
    assert "dealstage" in body_of(e)["message"]
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.update(deal_id, DealInput(properties={"dealstage": "nope"}))
    assert status_of(e) == 400
    before = sb.get_record(ENT, "deals", deal_id)["properties"]["hs_lastmodifieddate"]
    sb.advance(1)
    ok = ent.crm.deals.basic_api.update(
        deal_id,
        DealInput(
            properties={"dealstage": "contractsent", "closedate": "2026-12-24T00:00:00.000Z"}
        ),
    )
    assert ok.properties["dealstage"] == "contractsent"
    assert ok.properties["hs_lastmodifieddate"] > before
    moved = ent.crm.deals.basic_api.update(
        deal_id, DealInput(properties={"pipeline": "renewals", "dealstage": "renewal_open"})
    )
    assert moved.properties["pipeline"] == "renewals"
    events = sb.drain_events(ENT)
    assert {(e["propertyName"], e["changeSource"]) for e in events} >= {
        ("dealstage", "INTEGRATION"),
        ("closedate", "INTEGRATION"),
    }
    sb.assert_no_contract_violations()


def test_rep_changes_and_ui_edits(sb, ent, map_schema):
    deal_id = sb.records(ENT, "deals")[0]["id"]
    events = sb.rep_update_deal(ENT, deal_id, {"dealstage": "closedwon"})
    assert events[0]["changeSource"] == "CRM_UI" and events[0]["propertyValue"] == "closedwon"
    assert events[0]["subscriptionType"] == "deal.propertyChange"
    assert sb.get_record(ENT, "deals", deal_id)["properties"]["hs_deal_stage_probability"] == "1.0"
    t = map_schema.object_type_id
    plan = upsert(ent, t, [("p-1", {"map_name": "A"})]).results[0]
    sb.drain_events()
    before = sb.get_record(ENT, t, plan.id)["properties"]["hs_lastmodifieddate"]
    sb.advance(2)
    sb.ui_edit(ENT, t, plan.id, {"map_status": "complete"})
    after = sb.get_record(ENT, t, plan.id)
    assert after["properties"]["map_status"] == "complete"
    assert after["properties"]["hs_lastmodifieddate"] > before
    assert sb.drain_events() == []  # nobody is told


# ---------------------------------------------------------------------------------------------
# search


def test_search_paging_and_lastmodified_filter(sb, ent, map_schema):
    t = map_schema.object_type_id
    upsert(ent, t, [(f"u-{i}", {"map_name": f"plan {i:02d}"}) for i in range(25)])
    seen, after = [], "0"
    while after is not None:
        page = ent.crm.objects.search_api.do_search(
            t, search_req(limit=10, after=after, sorts=["map_name"], properties=["map_name"])
        )
        assert page.total == 25
        seen += [r.properties["map_name"] for r in page.results]
        after = page.paging.next.after if page.paging else None
        sb.advance(0.25)  # stay under 5 searches per second
    assert seen == [f"plan {i:02d}" for i in range(25)]

    sb.advance(5)
    cutoff = sb.now_ms()
    sb.advance(1)
    target = sb.records(ENT, t)[3]["id"]
    sb.ui_edit(ENT, t, target, {"map_status": "complete"})
    flt = Filter(property_name="hs_lastmodifieddate", operator="GTE", value=str(cutoff))
    res = ent.crm.objects.search_api.do_search(
        t, search_req(filter_groups=[FilterGroup(filters=[flt])], properties=["map_status"])
    )
    assert [r.id for r in res.results] == [target] and res.total == 1
    assert res.results[0].properties["map_status"] == "complete"
    iso = Filter(property_name="hs_lastmodifieddate", operator="LTE", value="2000-01-01T00:00:00Z")
    assert (
        ent.crm.objects.search_api.do_search(
            t, search_req(filter_groups=[FilterGroup(filters=[iso])])
        ).total
        == 0
    )
    with pytest.raises(Exception) as e:
        ent.crm.objects.search_api.do_search(t, search_req(limit=201))
    assert status_of(e) == 400
    sb.assert_no_contract_violations()


def test_search_has_its_own_five_per_second_limit(sb, ent):
    sb.clock.freeze()  # only sb.advance() moves time now
    for _ in range(5):
        ent.crm.deals.search_api.do_search(search_req())
    with pytest.raises(Exception) as e:
        ent.crm.deals.search_api.do_search(search_req())
    assert status_of(e) == 429 and body_of(e)["policyName"] == "SECONDLY"
    ent.crm.deals.basic_api.get_page(limit=1)  # other endpoints are not affected
    sb.advance(1.01)
    ent.crm.deals.search_api.do_search(search_req())


# ---------------------------------------------------------------------------------------------
# rate limit, call log, faults


def test_ten_secondly_rolling_limit(sb, ent):
    sb.clock.freeze()  # only sb.advance() moves time now
    for _ in range(110):
        ent.crm.deals.basic_api.get_page(limit=1)
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.get_page(limit=1)
    assert status_of(e) == 429
    body = body_of(e)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert "Retry-After" not in e.value.headers
    sb.rate_limit_retry_after = 3
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.get_page(limit=1)
    assert e.value.headers["Retry-After"] == "3"
    sb.advance(10.01)
    ent.crm.deals.basic_api.get_page(limit=1)
    counts = sb.call_counts(ENT)
    assert counts["GET /crm/v3/objects/{object_type}"] == 113
    assert sb.calls(ENT)[-1]["status"] == 200 and sb.calls(ENT)[-2]["status"] == 429


def test_rate_limit_headers_and_portals_are_separate(sb, server, ent):
    sb.clock.freeze()  # only sb.advance() moves time now
    r = requests.get(
        f"{server.url}/crm/v3/objects/deals",
        headers={"Authorization": f"Bearer {sb.issue_tokens(ENT)['access_token']}"},
    )
    assert r.headers["X-HubSpot-RateLimit-Max"] == "110"
    assert int(r.headers["X-HubSpot-RateLimit-Remaining"]) == 109
    for _ in range(109):
        ent.crm.deals.basic_api.get_page(limit=1)
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.get_page(limit=1)
    assert status_of(e) == 429
    pro = client(server, sb.issue_tokens(PRO)["access_token"])
    pro.crm.deals.basic_api.get_page(limit=1)


@pytest.mark.parametrize(
    "fault,status", [("429", 429), ("500", 500), ("502", 502), ("503", 503), ("401_expired", 401)]
)
def test_injected_status_faults(sb, ent, fault, status):
    sb.inject(fault, times=2, path_contains="/crm/v3/objects/deals")
    ent.crm.pipelines.pipelines_api.get_all(object_type="deals")  # not matched
    for _ in range(2):
        with pytest.raises(Exception) as e:
            ent.crm.deals.basic_api.get_page(limit=1)
        assert status_of(e) == status
    if fault == "429":
        assert body_of(e)["policyName"] == "TEN_SECONDLY_ROLLING"
    if fault == "401_expired":
        assert body_of(e)["category"] == "EXPIRED_AUTHENTICATION"
    assert ent.crm.deals.basic_api.get_page(limit=1).results  # queue used up
    assert sb.faults == []


def test_injected_timeout_and_dropped_connection(sb, ent):
    sb.timeout_fault_seconds = 3
    sb.inject("timeout", path_contains="/crm/v3/pipelines")
    with pytest.raises(Exception) as e:
        ent.crm.pipelines.pipelines_api.get_all(object_type="deals", _request_timeout=0.3)
    assert "timed out" in repr(e.value).lower() or "timeout" in repr(e.value).lower()
    sb.inject("drop", method="GET")
    with pytest.raises(Exception) as e:
        ent.crm.deals.basic_api.get_page(limit=1)
    assert not hasattr(e.value, "status")  # a transport error, not an HTTP answer
    assert ent.crm.deals.basic_api.get_page(limit=1).results


def test_retry_after_makes_urllib3_retry_gets_when_sdk_retries_are_on(sb, server):
    # documents the trap in hubspot.md section 9: the default Retry(3) honours Retry-After on GETs
    sb.rate_limit_retry_after = 0
    sb.inject("429", times=2, path_contains="/crm/v3/objects/deals")
    api = HubSpot(access_token=sb.issue_tokens(ENT)["access_token"], host=server.url)
    assert api.crm.deals.basic_api.get_page(limit=1).results
    assert sb.call_counts(ENT)["GET /crm/v3/objects/{object_type}"] == 3


# ---------------------------------------------------------------------------------------------
# webhooks and card fetches


def test_signature_helpers_match_hubspot_test_vectors():
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    body = (
        '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        '"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    assert (
        sign_v1(body, secret) == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    )
    assert (
        sign_v3("POST", "https://www.example.com/webhook_uri", body, secret, 1700000000000)
        == "/pXDSgWeGksQpwCsgqd43P0eY6gBIse9UX0tfkudUrE="
    )
    # the 12 escapes are decoded before signing, others are kept
    assert sign_v3("GET", "https://x.test/a%3Ab?q=%40%20", "", "s", 1) == sign_v3(
        "GET", "https://x.test/a:b?q=@%20", "", "s", 1
    )


def test_webhooks_are_signed_batched_and_verifiable(sb, receiver, hs_app):
    deal_id = sb.records(ENT, "deals")[0]["id"]
    sb.rep_update_deal(ENT, deal_id, {"dealstage": "closedwon"})
    sb.rep_delete_deal(ENT, sb.records(ENT, "deals")[0]["id"])
    events = sb.drain_events(ENT)
    assert {e["subscriptionType"] for e in events} == {"deal.propertyChange", "deal.deletion"}
    url = receiver.url + "/webhooks/hubspot?x=1"
    out = sb.send_webhooks(url, events * 60, hs_app.client_secret)  # 120 events -> 2 requests
    assert [d.status for d in out] == [200, 200]
    assert [len(json.loads(r["body"])) for r in receiver.requests] == [100, 20]
    for r in receiver.requests:
        h = r["headers"]
        assert verify_v3("POST", url, r["body"], hs_app.client_secret, h)
        assert (
            h["X-Hubspot-Signature"]
            == hashlib.sha256(hs_app.client_secret.encode() + r["body"]).hexdigest()
        )
        assert h["X-Hubspot-Signature-Version"] == "v1"
        assert not verify_v3("POST", url, r["body"], "wrong-secret", h)
        assert not verify_v3("POST", url, r["body"] + b" ", hs_app.client_secret, h)
    ev = json.loads(receiver.requests[0]["body"])[0]
    for key in (
        "subscriptionType",
        "objectId",
        "propertyName",
        "propertyValue",
        "changeSource",
        "occurredAt",
        "attemptNumber",
        "portalId",
        "appId",
        "eventId",
        "subscriptionId",
    ):
        assert key in ev
    assert ev["portalId"] == ENT and ev["appId"] == hs_app.app_id and ev["attemptNumber"] == 0


def test_webhook_signature_verifies_with_the_sdk(sb, receiver, hs_app):
    from hubspot.utils.signature import Signature

    sb.send_webhooks(
        receiver.url + "/hook",
        [
            {
                "subscriptionType": "deal.propertyChange",
                "objectId": 1,
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
                "portalId": ENT,
            }
        ],
        hs_app.client_secret,
    )
    r = receiver.requests[0]
    assert Signature.is_valid(
        signature=r["headers"]["X-Hubspot-Signature-V3"],
        client_secret=hs_app.client_secret,
        request_body=r["body"].decode(),
        http_uri=receiver.url + "/hook",
        http_method="POST",
        signature_version="v3",
        timestamp=r["headers"]["X-Hubspot-Request-Timestamp"],
    )


def test_webhook_duplicates_shuffle_and_retries(sb, hs_app):
    rec = Receiver(statuses=[500, 200])
    try:
        events = [
            {
                "subscriptionType": "deal.propertyChange",
                "objectId": i,
                "portalId": ENT,
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
                "eventId": i,
            }
            for i in range(30)
        ]
        out = sb.send_webhooks(rec.url + "/h", events, hs_app.client_secret, max_attempts=3)
        assert [d.status for d in out] == [500, 200]
        bodies = [json.loads(r["body"]) for r in rec.requests]
        assert {e["attemptNumber"] for e in bodies[0]} == {0}
        assert {e["attemptNumber"] for e in bodies[1]} == {1}
        rec.requests.clear()
        sb.send_webhooks(rec.url + "/h", events, hs_app.client_secret, duplicate=True, shuffle=True)
        first, second = [json.loads(r["body"]) for r in rec.requests]
        assert sorted(e["eventId"] for e in first) == list(range(30))
        assert [e["eventId"] for e in first] == [e["eventId"] for e in second]
        assert [e["eventId"] for e in first] != list(range(30))  # out of order (p ~ 1/30!)
    finally:
        rec.close()


def test_card_fetch_signs_and_adds_context_params(sb, receiver, hs_app):
    resp = sb.card_fetch(
        receiver.url + "/api/card/plan?dealId=42",
        "POST",
        json={"milestone": "m1", "status": "done"},
        client_secret=hs_app.client_secret,
        portal_id=ENT,
        user_id=9100000 + ENT,
    )
    assert resp.status == 200 and resp.json() == {"ok": True}
    r = receiver.requests[0]
    assert r["args"]["portalId"] == str(ENT) and r["args"]["userId"] == str(9100000 + ENT)
    assert r["args"]["appId"] == str(hs_app.app_id) and r["args"]["dealId"] == "42"
    assert "@" in r["args"]["userEmail"]
    assert json.loads(r["body"]) == {"milestone": "m1", "status": "done"}
    assert verify_v3("POST", r["url"], r["body"], hs_app.client_secret, r["headers"])
    sb.card_fetch(
        receiver.url + "/api/card/plan", client_secret=hs_app.client_secret, portal_id=ENT
    )
    g = receiver.requests[1]
    assert g["method"] == "GET" and g["body"] == b""
    assert verify_v3("GET", g["url"], b"", hs_app.client_secret, g["headers"])


def test_card_fetch_retries_once_on_5xx(sb, hs_app):
    rec = Receiver(statuses=[502, 200])
    try:
        resp = sb.card_fetch(rec.url + "/c", client_secret=hs_app.client_secret, portal_id=ENT)
        assert resp.status == 200 and resp.attempts == 2 and len(rec.requests) == 2
    finally:
        rec.close()


# ---------------------------------------------------------------------------------------------
# contract checks


def test_request_contract_violation_fails_loudly(sb, server):
    tok = sb.issue_tokens(ENT)["access_token"]
    # the spec requires "associations" on create and string property values
    r = requests.post(
        f"{server.url}/crm/v3/objects/deals",
        headers={"Authorization": f"Bearer {tok}"},
        json={"properties": {"dealname": "x", "amount": 5}},
    )
    assert r.status_code == 500 and r.json()["category"] == "SANDBOX_CONTRACT_VIOLATION"
    assert "associations" in r.json()["message"] and "amount" in r.json()["message"]
    assert sb.contract_violations
    with pytest.raises(AssertionError):
        sb.assert_no_contract_violations()
    assert sb.records(ENT, "deals")[-1]["properties"]["dealname"] != "x"


def test_response_contract_violation_fails_loudly(sb, server, monkeypatch):
    from sandboxes import hubspot as mod

    def broken(self, ctx, object_type):
        return 200, {"results": [{"id": 1}]}  # Pipeline requires label, stages, ...

    monkeypatch.setattr(mod._Handlers, "pipelines_list", broken)
    r = requests.get(
        f"{server.url}/crm/v3/pipelines/deals",
        headers={"Authorization": f"Bearer {sb.issue_tokens(ENT)['access_token']}"},
    )
    assert r.status_code == 500 and "sandbox's own answer" in r.json()["message"]


def test_strict_contract_refuses_to_run_without_specs(tmp_path, monkeypatch):
    """Missing specs must fail the contract tests loudly, never let them pass unchecked."""
    from sandboxes.hubspot import SpecsMissing

    monkeypatch.setenv("HUBSPOT_SPECS_DIR", str(tmp_path))
    with pytest.raises(SpecsMissing, match="spec directory not found"):
        HubSpotSandbox()


def test_the_default_specs_are_the_projects_own_copy(monkeypatch):
    from sandboxes.hubspot import default_specs_dir

    monkeypatch.delenv("HUBSPOT_SPECS_DIR", raising=False)
    root = Path(__file__).resolve().parents[2]
    assert default_specs_dir() == root / "sandboxes" / "specs" / "hubspot"
    assert HubSpotSandbox(seed=False).contract.enabled


def test_warn_contract_runs_without_specs_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HUBSPOT_SPECS_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="sandboxes.hubspot"):
        sb = HubSpotSandbox(contract="warn")
    assert not sb.contract.enabled
    assert sum("contract checks are OFF" in r.message for r in caplog.records) == 1
    with serve(sb) as srv:
        tok = sb.issue_tokens(ENT)["access_token"]
        r = requests.post(
            f"{srv.url}/crm/v3/objects/deals",
            headers={"Authorization": f"Bearer {tok}"},
            json={"properties": {"dealname": "no checks"}},
        )
        assert r.status_code == 201


def test_unknown_and_missing_tokens(sb, server):
    r = requests.get(f"{server.url}/crm/v3/objects/deals")
    assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"
    r = requests.get(f"{server.url}/crm/v3/objects/deals", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    tok = sb.issue_tokens(ENT, scopes=["oauth"])["access_token"]
    r = requests.get(
        f"{server.url}/crm/v3/objects/deals", headers={"Authorization": f"Bearer {tok}"}
    )
    assert r.status_code == 403 and r.json()["category"] == "MISSING_SCOPES"
    assert requests.get(f"{server.url}/").status_code == 200


def test_tls_with_a_private_ca(sb, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = __import__("ssl").SSLContext(__import__("ssl").PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with serve(sb, ssl_context=ctx) as srv:
        assert srv.url.startswith("https://localhost:")
        api = HubSpot(
            access_token=sb.issue_tokens(ENT)["access_token"],
            host=srv.url,
            ssl_ca_cert=str(ca_file),
            retry=Retry(total=0),
        )
        assert api.crm.pipelines.pipelines_api.get_all(object_type="deals").results


def test_state_page_and_direct_authorize_helper(sb, server, hs_app):
    code = sb.authorize(
        client_id=hs_app.client_id, redirect_uri=REDIRECT, scopes=SCOPES, portal_id=ENT
    )
    tok = requests.post(
        f"{server.url}/oauth/v1/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://elsewhere/cb",
            "client_id": hs_app.client_id,
            "client_secret": hs_app.client_secret,
        },
    )
    assert tok.status_code == 400 and tok.json()["status"] == "BAD_REDIRECT_URI"
    state = requests.get(f"{server.url}/_sandbox/state").json()
    assert {p["portalId"]: p["tier"] for p in state["portals"]} == {
        ENT: "enterprise",
        PRO: "professional",
    }


def test_every_endpoint_answers_within_the_published_contract(sb, server, ent, map_schema):
    """A tour of the less used endpoints with raw HTTP; every answer is checked against the spec."""
    tok = sb.issue_tokens(ENT)["access_token"]
    h = {"Authorization": f"Bearer {tok}"}
    u = server.url
    t = map_schema.object_type_id

    def call(method, path, expect, **kw):
        r = requests.request(method, u + path, headers=h, **kw)
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    # schemas
    call(
        "PATCH",
        f"/crm-object-schemas/v3/schemas/{t}",
        200,
        json={"searchableProperties": ["map_name"]},
    )
    call(
        "POST",
        f"/crm-object-schemas/v3/schemas/{t}/associations",
        201,
        json={"fromObjectTypeId": t, "toObjectTypeId": "0-1", "name": "map_to_contact"},
    )
    call("GET", "/crm/v3/schemas/p_mutual_action_plan", 200)
    call("GET", "/crm-object-schemas/v3/schemas/p_nothing", 404)
    # properties on the custom object
    call(
        "POST",
        f"/crm/v3/properties/{t}",
        201,
        json={
            "name": "map_risk",
            "label": "Risk",
            "type": "enumeration",
            "fieldType": "select",
            "groupName": "mutual_action_plan_information",
            "options": [
                {"label": "On track", "value": "on_track", "hidden": False, "displayOrder": 0},
                {"label": "At risk", "value": "at_risk", "hidden": False, "displayOrder": 1},
            ],
        },
    )
    call("GET", f"/crm/v3/properties/{t}/map_risk", 200)
    call("PATCH", f"/crm/v3/properties/{t}/map_risk", 200, json={"label": "Plan risk"})
    call(
        "POST",
        f"/crm/v3/properties/{t}/batch/read",
        200,
        json={
            "inputs": [{"name": "map_risk"}],
            "archived": False,
            "dataSensitivity": "non_sensitive",
            "properties": [],
        },
    )
    call("GET", f"/crm/v3/properties/{t}/groups", 200)
    call("GET", f"/crm/v3/properties/{t}/groups/mutual_action_plan_information", 200)
    # records
    created = call(
        "POST",
        f"/crm/v3/objects/{t}/batch/create",
        201,
        json={
            "inputs": [
                {
                    "properties": {
                        "map_name": f"p{i}",
                        "map_external_id": f"e{i}",
                        "map_risk": "at_risk",
                    },
                    "associations": [],
                }
                for i in range(3)
            ]
        },
    )
    ids = [r["id"] for r in created["results"]]
    call(
        "POST",
        f"/crm/v3/objects/{t}/batch/create",
        400,
        json={
            "inputs": [
                {
                    "properties": {"map_name": "x", "map_external_id": "y", "map_risk": "bad"},
                    "associations": [],
                }
            ]
        },
    )
    call(
        "POST",
        f"/crm/v3/objects/{t}/batch/read",
        200,
        json={
            "inputs": [{"id": i} for i in ids],
            "properties": ["map_name"],
            "propertiesWithHistory": [],
        },
    )
    part = call(
        "POST",
        f"/crm/v3/objects/{t}/batch/read",
        207,
        json={
            "inputs": [{"id": ids[0]}, {"id": "999999"}],
            "properties": [],
            "propertiesWithHistory": [],
        },
    )
    assert part["numErrors"] == 1
    call(
        "POST",
        f"/crm/v3/objects/{t}/batch/update",
        200,
        json={"inputs": [{"id": ids[0], "properties": {"map_risk": "on_track"}}]},
    )
    call(
        "POST",
        f"/crm/v3/objects/{t}/batch/update",
        400,
        json={"inputs": [{"id": ids[0], "properties": {}}, {"id": ids[0], "properties": {}}]},
    )
    page = call("GET", f"/crm/v3/objects/{t}?limit=2&properties=map_name", 200)
    rest = call("GET", f"/crm/v3/objects/{t}?limit=2&after={page['paging']['next']['after']}", 200)
    assert len(page["results"]) + len(rest["results"]) == 3
    call("POST", f"/crm/v3/objects/{t}/batch/archive", 204, json={"inputs": [{"id": ids[2]}]})
    call("GET", f"/crm/v3/objects/{t}/{ids[2]}", 404)
    call("GET", f"/crm/v3/objects/{t}/{ids[2]}?archived=true", 200)
    call(
        "POST",
        f"/crm/v3/objects/{t}",
        409,
        json={"properties": {"map_name": "dup", "map_external_id": "e0"}, "associations": []},
    )
    deal = call(
        "POST",
        "/crm/v3/objects/0-3",
        201,
        json={"properties": {"dealname": "New deal", "amount": "1000"}, "associations": []},
    )
    assert deal["properties"]["dealstage"] == "appointmentscheduled"
    call("GET", f"/crm/v3/objects/0-3/{deal['id']}?properties=hs_deal_stage_probability", 200)
    call(
        "POST",
        "/crm/v3/objects/0-3/search",
        200,
        json={
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "dealstage",
                            "operator": "IN",
                            "values": ["appointmentscheduled", "closedwon"],
                        }
                    ]
                }
            ],
            "sorts": ["-createdate"],
            "properties": ["dealname"],
            "limit": 5,
            "after": "0",
            "query": "new",
        },
    )
    # associations v4
    call(
        "PUT",
        f"/crm/v4/objects/{t}/{ids[0]}/associations/deals/{deal['id']}",
        201,
        json=[
            {
                "associationCategory": "USER_DEFINED",
                "associationTypeId": int(map_schema.associations[0].id),
            }
        ],
    )
    call("PUT", f"/crm/v4/objects/{t}/{ids[1]}/associations/default/deals/{deal['id']}", 200)
    call("PUT", f"/crm/v4/objects/{t}/{ids[1]}/associations/default/deals/999999", 404)
    call(
        "POST",
        f"/crm/v4/associations/{t}/deals/batch/associate/default",
        200,
        json={"inputs": [{"from": {"id": ids[0]}, "to": {"id": deal["id"]}}]},
    )
    call(
        "POST", f"/crm/v4/associations/{t}/deals/batch/read", 200, json={"inputs": [{"id": ids[0]}]}
    )
    call(
        "POST",
        "/crm/v4/associations/deals/deals/labels",
        200,
        json={"name": "renewal_of", "label": "Renewal of"},
    )
    labels = call("GET", "/crm/v4/associations/deals/deals/labels", 200)["results"]
    call(
        "PUT",
        "/crm/v4/associations/deals/deals/labels",
        204,
        json={"associationTypeId": labels[0]["typeId"], "label": "Renews"},
    )
    call("DELETE", f"/crm/v4/associations/deals/deals/labels/{labels[0]['typeId']}", 204)
    call(
        "POST",
        f"/crm/v4/associations/{t}/deals/batch/archive",
        204,
        json={"inputs": [{"from": {"id": ids[0]}, "to": [{"id": deal["id"]}]}]},
    )
    assert sb.associations(ENT, t, ids[0], "deals") == {}
    call("DELETE", f"/crm/v3/objects/0-3/{deal['id']}", 204)
    # pipelines
    call("GET", "/crm/v3/pipelines/deals/default", 200)
    call("GET", "/crm/v3/pipelines/0-3/default/stages/closedwon", 200)
    call("GET", "/crm/v3/pipelines/deals/nope", 404)
    # oauth metadata endpoints
    call("GET", f"/oauth/v1/access-tokens/{tok}", 200)
    call("GET", f"/oauth/v1/refresh-tokens/{sb.issue_tokens(ENT)['refresh_token']}", 200)
    sb.assert_no_contract_violations()


def test_auto_delivery_and_the_rep_move_form(sb, server, receiver, hs_app):
    sb.webhook_target_url = receiver.url + "/webhooks/hubspot"
    deal_id = sb.records(ENT, "deals")[0]["id"]
    home = requests.get(server.url + "/")
    assert f'name=deal_id value="{deal_id}"' in home.text
    r = requests.post(
        server.url + "/_sandbox/rep-move",
        allow_redirects=False,
        data={"portal_id": str(ENT), "deal_id": deal_id, "dealstage": "closedwon"},
    )
    assert r.status_code == 303
    deadline = time.time() + 5
    while not receiver.requests and time.time() < deadline:
        time.sleep(0.02)
    (req,) = receiver.requests
    (ev,) = json.loads(req["body"])
    assert ev["propertyName"] == "dealstage" and ev["propertyValue"] == "closedwon"
    assert ev["changeSource"] == "CRM_UI" and ev["objectId"] == int(deal_id)
    assert verify_v3(
        "POST", sb.webhook_target_url, req["body"], hs_app.client_secret, req["headers"]
    )
    assert sb.drain_events() == []


def test_malformed_body_with_contract_checks_off_is_a_400(server, sb):
    sb.contract_mode = "off"
    sb.contract = None
    r = requests.post(
        f"{server.url}/crm/v4/associations/deals/deals/batch/create",
        headers={"Authorization": f"Bearer {sb.issue_tokens(ENT)['access_token']}"},
        json={"inputs": [{"to": {"id": "1"}}]},
    )
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
