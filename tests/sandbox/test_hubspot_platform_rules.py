"""HubSpot sandbox rules taken from HubSpot's published spec and documentation: search `sorts`
as strings, the 2026-03 OAuth endpoints (and v1 after its removal), archived records and the
recycle bin, records created in HubSpot's UI, tier upgrades. Real SDK over real HTTP where the
SDK has the call (hubspot-api-client 12 has no 2026-03 OAuth: plain form posts, as authlib
sends them)."""

from __future__ import annotations

import json
import urllib.parse

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
)
from hubspot.crm.schemas import (
    ObjectSchemaEgg,
    ObjectTypeDefinitionLabels,
    ObjectTypePropertyCreate,
)
from urllib3.util.retry import Retry

from sandboxes.hubspot import HubSpotSandbox, serve

ENT, PRO = 100001, 100002
REDIRECT = "http://localhost:5000/oauth/hubspot/callback"
CUSTOM = ["crm.objects.custom.read", "crm.objects.custom.write", "crm.schemas.custom.read",
          "crm.schemas.custom.write"]


@pytest.fixture
def app(hs_app):  # sb, server, hs_app and ent: tests/sandbox/conftest.py
    return hs_app


def client(server, token: str) -> HubSpot:
    return HubSpot(access_token=token, host=server.url, retry=Retry(total=0, redirect=0))


def _schema(ent, name="mutual_action_plan"):
    return ent.crm.schemas.core_api.create(
        object_schema_egg=ObjectSchemaEgg(
            name=name,
            labels=ObjectTypeDefinitionLabels(singular=name, plural=name + "s"),
            primary_display_property="map_name",
            required_properties=["map_name"],
            searchable_properties=["map_name"],
            properties=[
                ObjectTypePropertyCreate(name="map_name", label="Name", type="string",
                                         field_type="text"),
                ObjectTypePropertyCreate(name="map_uuid", label="UUID", type="string",
                                         field_type="text", has_unique_value=True),
            ],
            associated_objects=["DEAL"],
        )
    )


def _upsert(api, type_id, items):
    return api.crm.objects.batch_api.upsert(
        type_id,
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(id=u, id_property="map_uuid",
                                                   properties={"map_name": n})
                for u, n in items
            ]
        ),
    ).results


# ---------------------------------------------------------------------------------------------
# 1. search sorts are strings


def _search(api, type_id, sorts):
    req = PublicObjectSearchRequest(filter_groups=[], sorts=sorts, properties=["map_name"],
                                    limit=10, after="0")
    return api.crm.objects.search_api.do_search(type_id, req)


def test_search_sorts_are_property_names_with_a_minus_for_descending(sb, ent):
    t = _schema(ent).object_type_id
    _upsert(ent, t, [("u-b", "Bravo"), ("u-a", "Alpha"), ("u-c", "Charlie")])
    up = _search(ent, t, ["map_name"])
    assert [r.properties["map_name"] for r in up.results] == ["Alpha", "Bravo", "Charlie"]
    down = _search(ent, t, ["-map_name"])
    assert [r.properties["map_name"] for r in down.results] == ["Charlie", "Bravo", "Alpha"]
    sb.assert_no_contract_violations()


def test_object_sorts_break_the_published_contract(sb, server):
    token = sb.issue_tokens(ENT)["access_token"]
    r = requests.post(
        f"{server.url}/crm/v3/objects/deals/search",
        headers={"Authorization": f"Bearer {token}"},
        json={"filterGroups": [], "properties": [], "limit": 10, "after": "0",
              "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]},
    )
    assert r.status_code == 500 and r.json()["category"] == "SANDBOX_CONTRACT_VIOLATION"
    assert "sorts/0" in r.json()["message"]


# ---------------------------------------------------------------------------------------------
# 2. OAuth on the date-versioned endpoints


def _code(sb, app, portal=ENT, scopes=("oauth", "crm.objects.deals.read")):
    return sb.authorize(client_id=app.client_id, redirect_uri=REDIRECT, scopes=list(scopes),
                        portal_id=portal)


def _post(server, path, **form):
    return requests.post(server.url + path, data=form)


def test_2026_03_code_exchange_refresh_and_introspection(sb, server, app):
    r = _post(server, "/oauth/2026-03/token", grant_type="authorization_code",
              code=_code(sb, app), redirect_uri=REDIRECT, client_id=app.client_id,
              client_secret=app.client_secret)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_use"] == "access_token" and tok["expires_in"] == 1800
    assert tok["hub_id"] == ENT and tok["refresh_token"]

    info = _post(server, "/oauth/2026-03/token/introspect", client_id=app.client_id,
                 client_secret=app.client_secret, token=tok["access_token"],
                 token_type_hint="access_token").json()
    assert info["active"] is True and info["token_use"] == "access_token"
    assert info["hub_id"] == ENT and info["user_id"] == tok["user_id"] and info["user"]
    assert info["app_id"] == app.app_id and info["client_id"] == app.client_id
    assert info["signed_access_token"]["hubId"] == ENT and 0 < info["expires_in"] <= 1800

    rinfo = _post(server, "/oauth/2026-03/token/introspect", client_id=app.client_id,
                  client_secret=app.client_secret, token=tok["refresh_token"]).json()
    assert rinfo["token_use"] == "refresh_token" and rinfo["hub_id"] == ENT

    new = _post(server, "/oauth/2026-03/token", grant_type="refresh_token",
                refresh_token=tok["refresh_token"], client_id=app.client_id,
                client_secret=app.client_secret)
    assert new.status_code == 200 and new.json()["access_token"] != tok["access_token"]

    sb.advance(1801)
    expired = _post(server, "/oauth/2026-03/token/introspect", client_id=app.client_id,
                    client_secret=app.client_secret, token=tok["access_token"]).json()
    assert expired["active"] is False and expired["expires_in"] == 0

    assert _post(server, "/oauth/2026-03/token/revoke", client_id=app.client_id,
                 client_secret=app.client_secret, token=tok["refresh_token"]).status_code == 204
    gone = _post(server, "/oauth/2026-03/token", grant_type="refresh_token",
                 refresh_token=tok["refresh_token"], client_id=app.client_id,
                 client_secret=app.client_secret)
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    assert gone.json()["status"] == "BAD_REFRESH_TOKEN"
    calls = sb.call_counts(ENT)
    assert calls["POST /oauth/2026-03/token"] >= 2
    assert calls["POST /oauth/2026-03/token/introspect"] >= 2
    sb.assert_no_contract_violations()


def test_2026_03_takes_parameters_from_the_form_body_only(sb, server, app):
    tok = sb.issue_tokens(ENT)
    qs = urllib.parse.urlencode({"client_secret": app.client_secret,
                                 "refresh_token": tok["refresh_token"]})
    r = requests.post(f"{server.url}/oauth/2026-03/token?{qs}",
                      data={"grant_type": "refresh_token", "client_id": app.client_id})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    # the legacy v1 endpoint still reads them (HubSpot's v1 spec lists them as query params)
    r = requests.post(f"{server.url}/oauth/v1/token?{qs}",
                      data={"grant_type": "refresh_token", "client_id": app.client_id})
    assert r.status_code == 200


def test_introspection_refuses_unknown_tokens_and_other_apps(sb, server, app):
    other = sb.add_app(client_id="other", client_secret="other-secret")
    tok = sb.issue_tokens(ENT, app_id=app.app_id)
    for cid, secret, token in (
        (app.client_id, app.client_secret, "nope"),
        (other.client_id, other.client_secret, tok["access_token"]),
    ):
        r = _post(server, "/oauth/2026-03/token/introspect", client_id=cid,
                  client_secret=secret, token=token)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = _post(server, "/oauth/2026-03/token/introspect", client_id=app.client_id,
              client_secret="wrong", token=tok["access_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    sb.assert_no_contract_violations()


def test_v1_oauth_off_answers_as_after_the_removal(server, app):
    sb = HubSpotSandbox(v1_oauth=False)
    srv = serve(sb)
    try:
        a = next(iter(sb.apps.values()))
        tok = sb.issue_tokens(ENT)
        api = HubSpot(host=srv.url, retry=Retry(total=0))
        with pytest.raises(Exception) as e:
            api.oauth.tokens_api.create(grant_type="refresh_token",
                                        refresh_token=tok["refresh_token"],
                                        client_id=a.client_id, client_secret=a.client_secret)
        assert e.value.status == 404 and "2027-02-16" in json.loads(e.value.body)["message"]
        with pytest.raises(Exception) as e:
            api.oauth.access_tokens_api.get(token=tok["access_token"])
        assert e.value.status == 404
        assert [c["endpoint"] for c in sb.v1_oauth_calls] == [
            "POST /oauth/v1/token", "GET /oauth/v1/access-tokens/{token}"]
        r = _post(srv, "/oauth/2026-03/token", grant_type="refresh_token",
                  refresh_token=tok["refresh_token"], client_id=a.client_id,
                  client_secret=a.client_secret)
        assert r.status_code == 200
    finally:
        srv.shutdown()


# ---------------------------------------------------------------------------------------------
# 3. archived records, the recycle bin, records created in HubSpot's UI, tier upgrades


def test_archived_custom_records_are_listed_and_batch_read_with_archived_true(sb, ent):
    t = _schema(ent).object_type_id
    done = {r.properties["map_uuid"]: r for r in _upsert(ent, t, [("u-1", "K"), ("u-2", "G")])}
    keep, gone = done["u-1"], done["u-2"]
    ent.crm.objects.basic_api.archive(t, gone.id)

    live = ent.crm.objects.basic_api.get_page(t, properties=["map_uuid"])
    assert [r.id for r in live.results] == [keep.id]
    archived = ent.crm.objects.basic_api.get_page(t, properties=["map_uuid"], archived=True)
    assert [r.id for r in archived.results] == [gone.id]
    assert archived.results[0].archived is True and archived.results[0].archived_at

    read = BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=gone.id)], properties=["map_uuid"],
        properties_with_history=[])
    got = ent.crm.objects.batch_api.read(t, read, archived=True)
    assert [(r.id, r.properties["map_uuid"]) for r in got.results] == [(gone.id, "u-2")]
    # without archived=true the archived record is "not found" (207 with errors)
    plain = ent.crm.objects.batch_api.read(t, read)
    assert plain.results == [] and plain.errors
    sb.assert_no_contract_violations()


def test_a_deal_deleted_in_the_ui_is_restored_from_the_recycle_bin(sb, ent):
    t = _schema(ent).object_type_id
    deal = sb.create_deal(ENT, {"dealname": "Bin me"})
    plan = sb.ui_create_record(ENT, t, {"map_name": "Plan"}, associations=[("deals", deal["id"])])
    sb.drain_events(all_types=True)
    sb.rep_delete_deal(ENT, deal["id"])
    assert sb.associations(ENT, t, plan["id"], "deals") == {}
    archived = ent.crm.deals.basic_api.get_page(archived=True)
    assert [d.id for d in archived.results] == [deal["id"]]

    sb.advance(60)
    events = sb.restore_deal(ENT, deal["id"])
    assert [e["subscriptionType"] for e in events] == ["deal.restore"]
    assert events[0]["objectId"] == int(deal["id"]) and events[0]["changeSource"] == "CRM_UI"
    back = ent.crm.deals.basic_api.get_by_id(deal["id"], properties=["dealname"])
    assert back.archived is False and back.properties["dealname"] == "Bin me"
    assert back.updated_at > archived.results[0].updated_at
    assert list(sb.associations(ENT, t, plan["id"], "deals")) == [deal["id"]]
    # delivered only to apps subscribed to deal.restore, like HubSpot
    assert [e["subscriptionType"] for e in sb.drain_events(ENT)] == ["deal.deletion"]
    sb.rep_delete_deal(ENT, deal["id"])
    sb.restore_deal(ENT, deal["id"])
    sb.webhook_subscriptions.append(("deal.restore", None))
    assert [e["subscriptionType"] for e in sb.drain_events(ENT)] == ["deal.deletion",
                                                                     "deal.restore"]
    with pytest.raises(KeyError):
        sb.restore_deal(ENT, deal["id"])  # not in the recycle bin any more


def test_ui_records_have_no_uuid_and_follow_required_properties(sb, ent):
    t = _schema(ent).object_type_id  # requires map_name only
    rec = sb.ui_create_record(ENT, t, {"map_name": "Born in HubSpot"})
    assert "map_uuid" not in rec["properties"]
    found = _search(ent, t, ["map_name"]).results
    assert [r.id for r in found] == [rec["id"]]
    with pytest.raises(Exception, match="map_name is required"):
        sb.ui_create_record(ENT, t, {"map_uuid": "x"})
    # a schema that requires the UUID property makes a UI user type one
    strict = ent.crm.schemas.core_api.create(object_schema_egg=ObjectSchemaEgg(
        name="strict_plan", labels=ObjectTypeDefinitionLabels(singular="S", plural="Ss"),
        primary_display_property="map_name", required_properties=["map_name", "map_uuid"],
        properties=[
            ObjectTypePropertyCreate(name="map_name", label="N", type="string",
                                     field_type="text"),
            ObjectTypePropertyCreate(name="map_uuid", label="U", type="string",
                                     field_type="text", has_unique_value=True)],
        associated_objects=["DEAL"]))
    with pytest.raises(Exception, match="map_uuid is required"):
        sb.ui_create_record(ENT, strict.object_type_id, {"map_name": "No UUID"})
    sb.ui_delete(ENT, t, rec["id"])
    assert _search(ent, t, []).total == 0
    sb.restore_record(ENT, t, rec["id"])
    assert _search(ent, t, []).total == 1


def test_restore_refuses_a_duplicate_unique_value(sb, ent):
    t = _schema(ent).object_type_id
    first = _upsert(ent, t, [("u-1", "One")])[0]
    sb.ui_delete(ENT, t, first.id)
    _upsert(ent, t, [("u-1", "Again")])
    with pytest.raises(Exception, match="same map_uuid"):
        sb.restore_record(ENT, t, first.id)


def test_upgrading_a_portal_to_enterprise_makes_custom_objects_available(sb, server, app):
    tok = sb.issue_tokens(PRO, scopes=["oauth", "crm.objects.deals.read"] + CUSTOM)
    pro = client(server, tok["access_token"])
    with pytest.raises(Exception) as e:
        _schema(pro)
    assert e.value.status == 403
    with pytest.raises(ValueError):  # required custom scopes: the consent page refuses
        sb.authorize(client_id=app.client_id, redirect_uri=REDIRECT, scopes=CUSTOM,
                     portal_id=PRO)
    sb.upgrade_portal(PRO, "enterprise")
    assert sb.portals[PRO].is_enterprise
    assert _schema(pro).object_type_id.startswith("2-")
    sb.authorize(client_id=app.client_id, redirect_uri=REDIRECT, scopes=CUSTOM, portal_id=PRO)


# ---------------------------------------------------------------------------------------------
# 7. the demo: deals start at the first open stage


def test_demo_deals_start_at_the_first_open_stage(sb, ent):
    sb.add_pipeline(ENT, "renewals", "Renewals", [
        ("lost_early", "Lost early", "0.0", "true"), ("r1", "Renewal due", "0.3", "false"),
        ("won", "Renewed", "1.0", "true")])
    deals = ent.crm.deals.basic_api.get_page(properties=["dealstage"]).results
    assert deals and {d.properties["dealstage"] for d in deals} == {"appointmentscheduled"}
    assert sb.first_open_stage(ENT) == "appointmentscheduled"
    assert sb.create_deal(ENT, {"dealname": "R", "pipeline": "renewals"})["properties"][
        "dealstage"] == "r1"
