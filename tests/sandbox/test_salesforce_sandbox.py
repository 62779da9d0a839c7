"""Tests of the Salesforce emulator over real HTTPS (trustme CA) with the real simple-salesforce."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sandboxes.salesforce import (
    REPO_PACKAGE_SOURCE,
    ApiError,
    Clock,
    SalesforceSandbox,
    id18,
    load_package_schema,
    normalize_id,
    serve,
)
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

API_VERSION = "66.0"
CLIENT_ID, CLIENT_SECRET = "mp-client", "mp-secret"
REDIRECT = "https://mutualplan.test/oauth/salesforce/callback"
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture
def sandbox():
    # the built-in package schema keeps these tests independent of salesforce_package/ edits
    sb = SalesforceSandbox(clock=Clock(start=T0), package_source=None)
    sb.add_connected_app(CLIENT_ID, CLIENT_SECRET, [REDIRECT])
    sb.add_org("Acme", my_domain="acme", package_installed=True)
    return sb


def make_sf(tok: dict, http: requests.Session) -> Salesforce:
    return Salesforce(session_id=tok["access_token"], instance_url=tok["instance_url"],
                      version=API_VERSION, session=http)


@pytest.fixture
def sf(sandbox, org, server, http):
    return make_sf(sandbox.issue_tokens(org, CLIENT_ID), http)


def pkce_pair() -> tuple:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize(http, server, org_id, user_id, challenge, *, action="allow", state="st-1",
              scope="api refresh_token id") -> dict:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
              "scope": scope, "state": state, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    page = http.get(f"{server.url}/services/oauth2/authorize", params=params)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert f'value="{org_id}:{user_id}"' in page.text
    r = http.post(f"{server.url}/services/oauth2/authorize",
                  data={**params, "login": f"{org_id}:{user_id}", "action": action},
                  allow_redirects=False)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(loc.query).items()}


def exchange(http, server, code, verifier, **extra):
    data = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT, "code_verifier": verifier}
    data.update(extra)
    data = {k: v for k, v in data.items() if v is not None}
    return http.post(f"{server.url}/services/oauth2/token", data=data)


def refresh(http, server, rt):
    return http.post(f"{server.url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": rt, "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET})


def login(http, server, org):
    verifier, challenge = pkce_pair()
    q = authorize(http, server, org.id, org.admin.id, challenge)
    r = exchange(http, server, q["code"], verifier)
    assert r.status_code == 200, r.text
    return r.json()


def new_opp(sf, name="Deal", stage="Prospecting", **kw):
    return sf.Opportunity.create({"Name": name, "StageName": stage, "CloseDate": "2026-12-31",
                                  **kw})["id"]


# --------------------------------------------------------------------------------------------
# ids, TLS, versions
# --------------------------------------------------------------------------------------------
def test_id18_checksum_and_normalize():
    assert id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert normalize_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert normalize_id("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    assert normalize_id("001A0000006Vm9rXXX") is None
    assert normalize_id("not-an-id") is None


def test_tls_with_local_ca_and_versions(server, http):
    assert server.url.startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        plain = requests.Session()
        plain.trust_env = False
        plain.get(f"{server.url}/services/data")
    versions = http.get(f"{server.url}/services/data").json()
    latest = versions[-1]
    assert latest == {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"}
    assert {"label": "Winter '26", "url": "/services/data/v65.0", "version": "65.0"} in versions


def test_unknown_and_retired_versions(server, http, sf):
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    assert http.get(f"{server.url}/services/data/v99.0/limits", headers=auth).status_code == 404
    assert http.get(f"{server.url}/services/data/v29.0/limits", headers=auth).status_code == 410


# --------------------------------------------------------------------------------------------
# OAuth
# --------------------------------------------------------------------------------------------
def test_pkce_code_exchange_signature_and_identity(sandbox, org, server, http):
    verifier, challenge = pkce_pair()
    q = authorize(http, server, org.id, org.admin.id, challenge)
    assert q["state"] == "st-1" and q["code"]

    # wrong verifier fails and does not burn... (we use a fresh code for the good exchange)
    bad = exchange(http, server, q["code"], verifier + "x")
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}

    q = authorize(http, server, org.id, org.admin.id, challenge)
    missing_secret = exchange(http, server, q["code"], verifier, client_secret=None)
    assert missing_secret.status_code == 400 and missing_secret.json()["error"] == "invalid_client"
    q = authorize(http, server, org.id, org.admin.id, challenge)
    missing_verifier = exchange(http, server, q["code"], None)
    assert missing_verifier.json()["error"] == "invalid_grant"

    q = authorize(http, server, org.id, org.admin.id, challenge)
    r = exchange(http, server, q["code"], verifier)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert "expires_in" not in tok
    assert set(tok) >= {"access_token", "refresh_token", "instance_url", "id", "issued_at",
                        "signature", "token_type", "scope"}
    assert tok["token_type"] == "Bearer" and tok["scope"] == "api refresh_token id"
    assert tok["instance_url"] == server.url
    assert tok["id"] == f"{server.url}/id/{org.id}/{org.admin.id}"
    assert tok["access_token"].startswith(org.id[:15] + "!")
    assert tok["issued_at"].isdigit() and len(tok["issued_at"]) == 13
    mac = hmac.new(CLIENT_SECRET.encode(), (tok["id"] + tok["issued_at"]).encode(),
                   hashlib.sha256).digest()
    assert hmac.compare_digest(base64.b64encode(mac).decode(), tok["signature"])

    # the code is single-use
    again = exchange(http, server, q["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    # identity URL and userinfo
    ident = http.get(tok["id"], params={"version": "latest"},
                     headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
    assert ident["organization_id"] == org.id and ident["user_id"] == org.admin.id
    assert ident["username"] == org.admin.username
    assert ident["urls"]["rest"] == f"{server.url}/services/data/v66.0/"
    assert ident["urls"]["custom_domain"] == "https://acme.my.salesforce.com"
    raw = http.get(tok["id"], headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
    assert "{version}" in raw["urls"]["rest"]
    assert http.get(tok["id"], headers={"Authorization": "Bearer nope"}).status_code == 403
    sf = make_sf(tok, http)
    info = sf.oauth2("userinfo")
    assert info["organization_id"] == org.id and info["user_id"] == org.admin.id


def test_authorize_deny_and_bad_requests(sandbox, org, server, http):
    _, challenge = pkce_pair()
    q = authorize(http, server, org.id, org.admin.id, challenge, action="deny", state="s9")
    assert q == {"error": "access_denied", "error_description": "end-user denied authorization",
                 "state": "s9"}
    # PKCE is required for this app
    r = http.get(f"{server.url}/services/oauth2/authorize", allow_redirects=False, params={
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT})
    assert r.status_code == 302 and "error=invalid_request" in r.headers["Location"]
    # unknown callback is not redirected to
    r = http.get(f"{server.url}/services/oauth2/authorize", allow_redirects=False, params={
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": "https://evil.test/cb",
        "code_challenge": challenge})
    assert r.status_code == 400 and "redirect_uri_mismatch" in r.text


def test_uninstalled_app_blocked_for_non_admin(sandbox, server, http):
    other = sandbox.add_org("Initech", package_installed=False)
    rep = sandbox.add_user(other, "rep@initech.example.com", is_admin=False)
    _, challenge = pkce_pair()
    q = authorize(http, server, other.id, rep.id, challenge)
    assert q["error"] == "invalid_client"
    assert q["error_description"] == "app must be installed into org"
    q = authorize(http, server, other.id, other.admin.id, challenge)   # admins may approve
    assert "code" in q


def test_refresh_without_rotation_keeps_token(sandbox, org, server, http):
    tok = login(http, server, org)
    r = refresh(http, server, tok["refresh_token"])
    assert r.status_code == 200
    body = r.json()
    assert "refresh_token" not in body and body["access_token"] != tok["access_token"]
    assert body["instance_url"] == server.url and body["id"] == tok["id"]
    assert refresh(http, server, tok["refresh_token"]).status_code == 200
    make_sf(body, http).query("SELECT Id FROM Opportunity")
    wrong = http.post(f"{server.url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
        "client_id": CLIENT_ID, "client_secret": "wrong"})
    assert wrong.json()["error"] == "invalid_client"


def test_refresh_token_rotation_invalidates_old(sandbox, org, server, http):
    sandbox.apps[CLIENT_ID].rotate_refresh_tokens = True
    tok = login(http, server, org)
    r1 = refresh(http, server, tok["refresh_token"]).json()
    assert r1["refresh_token"] != tok["refresh_token"]
    old = refresh(http, server, tok["refresh_token"])
    assert old.status_code == 400
    assert old.json() == {"error": "invalid_grant",
                          "error_description": "expired access/refresh token"}
    r2 = refresh(http, server, r1["refresh_token"])
    assert r2.status_code == 200 and r2.json()["refresh_token"] != r1["refresh_token"]


def test_revoke_refresh_token_kills_its_sessions(sandbox, org, server, http):
    tok = login(http, server, org)
    sf = make_sf(tok, http)
    sf.query("SELECT Id FROM Opportunity")
    assert http.post(f"{server.url}/services/oauth2/revoke",
                     data={"token": tok["refresh_token"]}).status_code == 200
    assert refresh(http, server, tok["refresh_token"]).json()["error"] == "invalid_grant"
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Opportunity")
    r = http.post(f"{server.url}/services/oauth2/revoke", data={"token": "unknown"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_token"


def test_revoke_access_token_only(sandbox, org, server, http):
    tok = login(http, server, org)
    assert http.post(f"{server.url}/services/oauth2/revoke",
                     data={"token": tok["access_token"]}).status_code == 200
    with pytest.raises(SalesforceExpiredSession):
        make_sf(tok, http).query("SELECT Id FROM Opportunity")
    assert refresh(http, server, tok["refresh_token"]).status_code == 200


def test_introspect(sandbox, org, server, http):
    tok = login(http, server, org)
    r = http.post(f"{server.url}/services/oauth2/introspect", data={"token": tok["access_token"]},
                  auth=(CLIENT_ID, CLIENT_SECRET)).json()
    assert r["active"] is True and r["token_type"] == "access_token"
    sandbox.clock.advance(org.session_timeout + 1)
    r = http.post(f"{server.url}/services/oauth2/introspect", data={"token": tok["access_token"]},
                  auth=(CLIENT_ID, CLIENT_SECRET)).json()
    assert r == {"active": False}


# --------------------------------------------------------------------------------------------
# describe / package / namespace
# --------------------------------------------------------------------------------------------
def test_describe_with_and_without_package(sandbox, org, server, http, sf):
    d = sf.Mutual_Action_Plan__c.describe()
    names = {f["name"]: f for f in d["fields"]}
    assert names["External_Id__c"]["externalId"] and names["External_Id__c"]["unique"]
    assert names["Opportunity__c"]["referenceTo"] == ["Opportunity"]
    ms = {f["name"]: f for f in sf.MAP_Milestone__c.describe()["fields"]}
    assert ms["Mutual_Action_Plan__c"]["cascadeDelete"] is True
    globals_ = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Mutual_Action_Plan__c", "MAP_Milestone__c", "Opportunity"} <= globals_

    bare = sandbox.add_org("Initech", package_installed=False)
    sf2 = make_sf(sandbox.issue_tokens(bare, CLIENT_ID), http)
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf2.Mutual_Action_Plan__c.describe()
    assert exc.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf2.query("SELECT Id FROM MAP_Milestone__c")
    assert exc.value.content[0]["errorCode"] == "INVALID_TYPE"
    opp_fields = {f["name"] for f in sf2.Opportunity.describe()["fields"]}
    assert "MAP_Progress__c" not in opp_fields
    sandbox.install_package(bare)
    assert sf2.MAP_Milestone__c.describe()["name"] == "MAP_Milestone__c"


def test_namespaced_org(sandbox, server, http):
    ns_org = sandbox.add_org("Globex", is_sandbox=True, namespace="mapns")
    assert ns_org.my_domain_host == "globex--uat.sandbox.my.salesforce.com"
    sf = make_sf(sandbox.issue_tokens(ns_org, CLIENT_ID), http)
    assert sf.is_sandbox() is True
    with pytest.raises(SalesforceResourceNotFound):
        sf.Mutual_Action_Plan__c.describe()
    d = sf.mapns__Mutual_Action_Plan__c.describe()
    fields = {f["name"] for f in d["fields"]}
    assert {"mapns__External_Id__c", "mapns__Opportunity__c", "Name", "Id"} <= fields
    opp = new_opp(sf)
    sf.mapns__Mutual_Action_Plan__c.upsert("mapns__External_Id__c/P-1", {
        "Name": "Plan", "mapns__Opportunity__c": opp})
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.mapns__Mutual_Action_Plan__c.upsert("mapns__External_Id__c/P-2", {
            "Name": "Plan", "Opportunity__c": opp})
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"
    rows = sf.query("SELECT Id, mapns__Opportunity__r.Name FROM mapns__Mutual_Action_Plan__c")
    assert rows["records"][0]["mapns__Opportunity__r"]["Name"] == "Deal"
    # Sforce-Call-Options: defaultNamespace resolves un-prefixed names on query
    rows = sf.query("SELECT Id, External_Id__c FROM Mutual_Action_Plan__c",
                    headers={"Sforce-Call-Options": "client=MAPBackend, defaultNamespace=mapns"})
    assert rows["records"][0]["mapns__External_Id__c"] == "P-1"


# --------------------------------------------------------------------------------------------
# rows, upsert, stages
# --------------------------------------------------------------------------------------------
def test_upsert_by_external_id_is_idempotent(sandbox, org, sf):
    opp = new_opp(sf)
    r1 = sf.Mutual_Action_Plan__c.upsert("External_Id__c/6f1c-uuid", {
        "Name": "Plan", "Opportunity__c": opp}, raw_response=True)
    assert r1.status_code == 201 and r1.json()["created"] is True
    r2 = sf.Mutual_Action_Plan__c.upsert("External_Id__c/6f1c-uuid", {
        "Name": "Plan v2", "Opportunity__c": opp[:15]}, raw_response=True)
    assert r2.status_code == 200
    assert r2.json() == {"id": r1.json()["id"], "success": True, "errors": [], "created": False}
    assert len(sandbox.records(org, "Mutual_Action_Plan__c")) == 1
    got = sf.Mutual_Action_Plan__c.get_by_custom_id("External_Id__c", "6f1c-uuid")
    assert got["Name"] == "Plan v2" and got["Opportunity__c"] == opp
    assert re.fullmatch(r"a0[0-9A-Za-z]{16}", got["Id"])
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Mutual_Action_Plan__c.create({"Name": "dup", "External_Id__c": "6F1C-UUID"})
    assert exc.value.content[0]["errorCode"] == "DUPLICATE_VALUE"


def test_crud_and_validation(sandbox, org, sf):
    opp = new_opp(sf)
    assert sf.Opportunity.update(opp, {"Amount": 1200}) == 204
    rec = sf.Opportunity.get(opp)
    assert rec["Amount"] == 1200.0 and rec["Probability"] == 10.0
    assert rec["SystemModstamp"] == "2026-11-26T12:00:00.000+0000"
    for bad, code in [({"Nope__c": 1}, "INVALID_FIELD"),
                      ({"SystemModstamp": "2026-01-01T00:00:00Z"},
                       "INVALID_FIELD_FOR_INSERT_UPDATE"),
                      ({"CloseDate": "31/12/2026"}, "JSON_PARSER_ERROR"),
                      ({"AccountId": "zzz"}, "MALFORMED_ID")]:
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.Opportunity.update(opp, bad)
        assert exc.value.content[0]["errorCode"] == code
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Opportunity.create({"Name": "x"})
    assert exc.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert set(exc.value.content[0]["fields"]) == {"StageName", "CloseDate"}
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.MAP_Milestone__c.create({"Name": "orphan"})
    assert exc.value.content[0]["fields"] == ["Mutual_Action_Plan__c"]
    assert sf.Opportunity.delete(opp) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunity.get(opp)


def test_stage_validation_per_org_and_sales_process(sandbox, org, server, http, sf):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        new_opp(sf, stage="Discovery")
    assert exc.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert exc.value.content[0]["fields"] == ["StageName"]
    stages = sf.query("SELECT MasterLabel, ApiName, IsClosed, IsWon, DefaultProbability "
                      "FROM OpportunityStage WHERE IsActive = true ORDER BY SortOrder")
    labels = [r["MasterLabel"] for r in stages["records"]]
    assert labels[0] == "Prospecting" and labels[-2:] == ["Closed Won", "Closed Lost"]
    assert stages["records"][-2]["IsWon"] is True

    sandbox.add_stage(org, "Discovery", probability=15, sales_processes=())
    sandbox.add_sales_process(org, "New Business", ["Discovery", "Closed Won", "Closed Lost"])
    rt = sandbox.add_record_type(org, "New Business", "New Business")
    opp = new_opp(sf, stage="Discovery", RecordTypeId=rt.id)
    assert sf.Opportunity.get(opp)["Probability"] == 15.0
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.update(opp, {"StageName": "Prospecting"})
    sf.Opportunity.update(opp, {"StageName": "Closed Won"})
    got = sf.Opportunity.get(opp)
    assert got["IsClosed"] and got["IsWon"] and got["ForecastCategoryName"] == "Closed"
    vals = sf.restful(f"ui-api/object-info/Opportunity/picklist-values/{rt.id}/StageName")
    # values keep the org's global stage order; the sales process only filters them
    assert [v["value"] for v in vals["values"]] == ["Closed Won", "Closed Lost", "Discovery"]
    rts = sf.query("SELECT Id, Name, BusinessProcessId FROM RecordType "
                   "WHERE SobjectType = 'Opportunity'")
    assert rts["records"][0]["Id"] == rt.id


def test_rep_edits_bump_modstamp(sandbox, org, sf):
    opp = new_opp(sf)
    before = sandbox.get_record(org, "Opportunity", opp)["SystemModstamp"]
    sandbox.clock.advance(5)
    rep = sandbox.add_user(org, "rep@acme.example.com", is_admin=False)
    rec = sandbox.rep_change_stage(org, opp, "Negotiation/Review", "2027-01-15", user_id=rep.id)
    assert rec["SystemModstamp"] > before and rec["LastModifiedById"] == rep.id
    got = sf.Opportunity.get(opp)
    assert got["StageName"] == "Negotiation/Review" and got["CloseDate"] == "2027-01-15"
    assert got["Probability"] == 90.0
    with pytest.raises(ApiError) as exc:
        sandbox.rep_change_stage(org, opp, "No Such Stage")
    assert exc.value.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


# --------------------------------------------------------------------------------------------
# composite / collections
# --------------------------------------------------------------------------------------------
def _composite_body(opp, all_or_none, bad_stage=False):
    base = f"/services/data/v{API_VERSION}"
    return {"allOrNone": all_or_none, "compositeRequest": [
        {"method": "PATCH", "url": f"{base}/sobjects/Mutual_Action_Plan__c/External_Id__c/MAP-42",
         "referenceId": "refPlan", "body": {"Name": "Plan", "Opportunity__c": opp}},
        {"method": "GET", "url": f"{base}/sobjects/Mutual_Action_Plan__c/External_Id__c/MAP-42"
                                 f"?fields=Id", "referenceId": "refPlanGet"},
        {"method": "PATCH", "url": f"{base}/sobjects/MAP_Milestone__c/External_Id__c/MS-1",
         "referenceId": "refMs1",
         "body": {"Name": "Kickoff", "Mutual_Action_Plan__c": "@{refPlanGet.Id}",
                  "Due_Date__c": "2026-12-05"}},
        {"method": "PATCH", "url": f"{base}/sobjects/Opportunity/{opp}", "referenceId": "refOpp",
         "body": {"StageName": "Bogus" if bad_stage else "Value Proposition"}},
    ]}


def test_composite_references_and_partial_failure(sandbox, org, sf):
    opp = new_opp(sf)
    ok = sf.restful("composite", method="POST", json=_composite_body(opp, True))
    codes = [r["httpStatusCode"] for r in ok["compositeResponse"]]
    assert codes == [201, 200, 201, 204]
    ms = sandbox.records(org, "MAP_Milestone__c")[0]
    assert ms["Mutual_Action_Plan__c"] == ok["compositeResponse"][0]["body"]["id"]

    # allOrNone=false: HTTP 200, the failing sub-requests report their errors, the rest applied
    # (the milestone exists now: setting its non-reparentable master-detail again is refused)
    resp = sf.restful("composite", method="POST", json=_composite_body(opp, False, True))
    subs = resp["compositeResponse"]
    assert [r["httpStatusCode"] for r in subs] == [200, 200, 400, 400]
    assert subs[2]["body"][0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert subs[3]["body"][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert sf.api_usage["api-usage"].used == sandbox.api_usage(org)


def test_composite_all_or_none_rolls_back(sandbox, org, sf):
    opp = new_opp(sf)
    resp = sf.restful("composite", method="POST", json=_composite_body(opp, True, True))
    subs = resp["compositeResponse"]
    assert [r["httpStatusCode"] for r in subs] == [400, 400, 400, 400]
    assert [r["body"][0]["errorCode"] for r in subs] == [
        "PROCESSING_HALTED", "PROCESSING_HALTED", "PROCESSING_HALTED",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert sandbox.records(org, "Mutual_Action_Plan__c") == []
    assert sandbox.records(org, "MAP_Milestone__c") == []
    assert sandbox.get_record(org, "Opportunity", opp)["StageName"] == "Prospecting"


def test_injected_composite_partial_and_lock(sandbox, org, sf):
    opp = new_opp(sf)
    sandbox.inject("composite_partial")
    subs = sf.restful("composite", method="POST",
                      json=_composite_body(opp, False))["compositeResponse"]
    assert [r["httpStatusCode"] for r in subs] == [201, 200, 201, 400]
    assert subs[3]["body"][0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    sandbox.inject("unable_to_lock_row")
    subs = sf.restful("composite", method="POST",
                      json=_composite_body(opp, True))["compositeResponse"]
    assert subs[0]["body"][0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    sandbox.inject("unable_to_lock_row", path_contains="/sobjects/Opportunity")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Opportunity.update(opp, {"Amount": 1})
    assert exc.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert sf.Opportunity.update(opp, {"Amount": 1}) == 204


def test_composite_limits(sf):
    reqs = [{"method": "GET", "url": f"/services/data/v{API_VERSION}/limits",
             "referenceId": f"r{i}"} for i in range(26)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite", method="POST", json={"compositeRequest": reqs})


def test_collections_upsert(sandbox, org, sf):
    opp = new_opp(sf)
    plan = sf.Mutual_Action_Plan__c.create({"Name": "P", "External_Id__c": "P1",
                                            "Opportunity__c": opp})["id"]
    body = {"allOrNone": False, "records": [
        {"attributes": {"type": "MAP_Milestone__c"}, "External_Id__c": "M1", "Name": "One",
         "Mutual_Action_Plan__c": plan},
        {"attributes": {"type": "MAP_Milestone__c"}, "External_Id__c": "M2", "Name": "Two"},
    ]}
    res = sf.restful("composite/sobjects/MAP_Milestone__c/External_Id__c", method="PATCH",
                     json=body)
    assert res[0]["success"] and res[0]["created"]
    assert not res[1]["success"] and res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    del body["records"][0]["Mutual_Action_Plan__c"]  # an update may not set the master-detail
    res = sf.restful("composite/sobjects/MAP_Milestone__c/External_Id__c", method="PATCH",
                     json=body)
    assert res[0]["success"] and res[0]["created"] is False


# --------------------------------------------------------------------------------------------
# query
# --------------------------------------------------------------------------------------------
def test_query_paging(sandbox, org, sf):
    sandbox.query_batch_size = 3
    for i in range(7):
        new_opp(sf, name=f"Deal {i:02d}")
    sandbox.reset_calls()
    first = sf.query("SELECT Id, Name FROM Opportunity ORDER BY Name DESC")
    assert first["totalSize"] == 7 and first["done"] is False and len(first["records"]) == 3
    assert first["nextRecordsUrl"].startswith(f"/services/data/v{API_VERSION}/query/01g")
    assert [r["Name"] for r in first["records"]] == ["Deal 06", "Deal 05", "Deal 04"]
    everything = sf.query_all("SELECT Id, Name FROM Opportunity ORDER BY Name")
    assert [r["Name"] for r in everything["records"]] == [f"Deal {i:02d}" for i in range(7)]
    counts = sandbox.call_counts()
    assert counts["GET /services/data/vXX.X/query"] == 2
    assert counts["GET /services/data/vXX.X/query/{locator}"] == 2
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE Name LIKE 'deal 0%'")["totalSize"] == 7
    assert sf.query("SELECT Id FROM Opportunity ORDER BY Name LIMIT 2 OFFSET 5")["totalSize"] == 2
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query_more("01gBOGUS-3", identifier_is_url=False)
    assert exc.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELEKT Id FROM Opportunity")
    assert exc.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_query_all_shows_deletions_and_cascade(sandbox, org, sf):
    opp = new_opp(sf)
    plan = sf.Mutual_Action_Plan__c.create({"Name": "P", "External_Id__c": "P1",
                                            "Opportunity__c": opp})["id"]
    ms = [sf.MAP_Milestone__c.create({"Name": f"M{i}", "Mutual_Action_Plan__c": plan,
                                      "External_Id__c": f"M{i}"})["id"] for i in range(2)]
    sandbox.clock.advance(2)
    sandbox.rep_delete(org, "Mutual_Action_Plan__c", plan)
    q = f"SELECT Id, IsDeleted FROM MAP_Milestone__c WHERE Mutual_Action_Plan__c = '{plan}'"
    assert sf.query(q)["totalSize"] == 0
    rows = sf.query_all(q, include_deleted=True)["records"]
    assert sorted(r["Id"] for r in rows) == sorted(ms) and all(r["IsDeleted"] for r in rows)
    deleted = sf.query_all("SELECT Id FROM Mutual_Action_Plan__c WHERE IsDeleted = true",
                           include_deleted=True)
    assert [r["Id"] for r in deleted["records"]] == [plan]
    # deleting the opportunity clears the plan lookup (SetNull); undelete restores
    sandbox.rep_undelete(org, "Mutual_Action_Plan__c", plan)
    sandbox.rep_delete(org, "Opportunity", opp)
    assert sandbox.get_record(org, "Mutual_Action_Plan__c", plan)["Opportunity__c"] is None
    res = sf.Mutual_Action_Plan__c.deleted(datetime(2026, 11, 26, tzinfo=UTC),
                                           datetime(2026, 11, 27, tzinfo=UTC))
    assert res["deletedRecords"] == []   # undeleted again


def test_system_modstamp_filter(sandbox, org, sf):
    opp_a, opp_b = new_opp(sf, "A"), new_opp(sf, "B")
    plan = sf.Mutual_Action_Plan__c.create({"Name": "P", "Opportunity__c": opp_a})["id"]
    hwm = sf.query("SELECT SystemModstamp FROM Opportunity ORDER BY SystemModstamp DESC "
                   "LIMIT 1")["records"][0]["SystemModstamp"]
    assert hwm == "2026-11-26T12:00:00.000+0000"
    sandbox.clock.advance(61)
    sandbox.rep_change_stage(org, opp_b, "Qualification")
    lit = "2026-11-26T12:00:00Z"
    rows = sf.query(f"SELECT Id, StageName, SystemModstamp FROM Opportunity "
                    f"WHERE SystemModstamp > {lit} ORDER BY SystemModstamp, Id")["records"]
    assert [r["Id"] for r in rows] == [opp_b]
    assert rows[0]["SystemModstamp"] == "2026-11-26T12:01:01.000+0000"
    rows = sf.query(f"SELECT Id FROM Mutual_Action_Plan__c WHERE Opportunity__c = '{opp_a[:15]}'"
                    f" AND SystemModstamp >= 2026-11-26T13:00:00+01:00")["records"]
    assert [r["Id"] for r in rows] == [plan]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(f"SELECT Id FROM Opportunity WHERE SystemModstamp > '{lit}'")
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "should not be enclosed in quotes" in exc.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id, Bogus__c FROM Opportunity")
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"
    semi = sf.query("SELECT Id FROM Opportunity WHERE Id IN (SELECT Opportunity__c FROM "
                    "Mutual_Action_Plan__c)")["records"]
    assert [r["Id"] for r in semi] == [opp_a]


# --------------------------------------------------------------------------------------------
# sessions, limits, faults
# --------------------------------------------------------------------------------------------
def test_invalid_session_after_expiry_mid_push(sandbox, org, sf):
    opp = new_opp(sf)
    sandbox.clock.advance(org.session_timeout - 10)
    sf.Opportunity.update(opp, {"Amount": 1})                # activity extends the session
    sandbox.clock.advance(org.session_timeout - 10)
    sf.Opportunity.update(opp, {"Amount": 2})
    sandbox.clock.advance(org.session_timeout + 1)
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.Opportunity.update(opp, {"Amount": 3})
    assert exc.value.status == 401
    assert exc.value.content == [{"message": "Session expired or invalid",
                                  "errorCode": "INVALID_SESSION_ID"}]
    sf2 = make_sf(sandbox.issue_tokens(org, CLIENT_ID), sf.session)
    sandbox.expire_sessions(org)
    with pytest.raises(SalesforceExpiredSession):
        sf2.query("SELECT Id FROM Opportunity")


def test_invalid_session_fault(sandbox, org, sf):
    sandbox.inject("invalid_session", path_contains="/query")
    sf.Opportunity.describe()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Opportunity")
    with pytest.raises(SalesforceExpiredSession):   # the token really is dead now
        sf.Opportunity.describe()


def test_request_limit_exceeded(sandbox, org, sf):
    sandbox.set_daily_limit(org, 3)
    for _ in range(3):
        sf.query("SELECT Id FROM Opportunity")
    assert sf.api_usage["api-usage"] == (3, 3)
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Opportunity")
    assert exc.value.status == 403
    assert exc.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    sandbox.clock.advance(24 * 3600 + 1)        # rolling 24 hours
    sf.session_id = sandbox.issue_tokens(org, CLIENT_ID)["access_token"]
    sf._generate_headers()
    sf.query("SELECT Id FROM Opportunity")
    assert sf.api_usage["api-usage"].used == 1
    sandbox.set_daily_limit(org, 100)
    sandbox.inject("request_limit")
    with pytest.raises(SalesforceRefusedRequest):
        sf.limits()
    sf.limits()


def test_limit_info_header_counts(sandbox, org, server, http, sf):
    sf.query("SELECT Id FROM Opportunity")
    assert sf.api_usage["api-usage"].used == 1 and sf.api_usage["api-usage"].total == 15000
    r = http.get(f"{server.url}/services/data")               # versions don't count
    assert "Sforce-Limit-Info" not in r.headers
    opp = new_opp(sf)
    sf.restful("composite", method="POST", json=_composite_body(opp, False))   # one call
    sf.limits()
    assert sf.api_usage["api-usage"].used == 4 == sandbox.api_usage(org)
    r = http.get(f"{server.url}/services/data/v{API_VERSION}/sobjects/Opportunity/{opp}",
                 headers={"Authorization": f"Bearer {sf.session_id}"})
    assert r.headers["Sforce-Limit-Info"] == "api-usage=5/15000"
    missing = http.get(f"{server.url}/services/data/v{API_VERSION}/sobjects/Opportunity/"
                       f"006000000000000", headers={"Authorization": f"Bearer {sf.session_id}"})
    assert missing.status_code == 404 and missing.headers["Sforce-Limit-Info"] == \
        "api-usage=6/15000"
    assert sf.limits()["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - 7}


def test_5xx_and_timeout_faults(sandbox, org, server, http, sf):
    sandbox.inject("503", times=2, path_contains="/composite")
    sandbox.inject("500")
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query("SELECT Id FROM Opportunity")
    assert exc.value.status == 500
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as exc:
            sf.restful("composite", method="POST", json={"compositeRequest": []})
        assert exc.value.status == 503
    sandbox.inject("timeout", delay=1.0, path_contains="/sobjects/Opportunity")
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.restful("sobjects/Opportunity", method="POST", timeout=0.2, json={
            "Name": "Slow", "StageName": "Prospecting", "CloseDate": "2026-12-31"})
    import time
    deadline = time.time() + 5
    while time.time() < deadline and not sandbox.records(org, "Opportunity"):
        time.sleep(0.05)
    assert [r["Name"] for r in sandbox.records(org, "Opportunity")] == ["Slow"]
    assert sandbox.faults == []


def test_oauth_auto_approve_for_headless_runs(sandbox, org, server, http):
    sandbox.auto_approve = True
    verifier, challenge = pkce_pair()
    r = http.get(f"{server.url}/services/oauth2/authorize", allow_redirects=False, params={
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
        "state": "x", "code_challenge": challenge, "code_challenge_method": "S256"})
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}
    tok = exchange(http, server, q["code"], verifier).json()
    assert tok["id"].endswith(f"/{org.id}/{org.admin.id}")


# --------------------------------------------------------------------------------------------
# package schema from DX source
# --------------------------------------------------------------------------------------------
_NS = 'xmlns="http://soap.sforce.com/2006/04/metadata"'


def _write_dx(root):
    plan = root / "objects" / "Plan__c"
    (plan / "fields").mkdir(parents=True)
    (plan / "Plan__c.object-meta.xml").write_text(
        f'<CustomObject {_NS}><label>Plan</label><pluralLabel>Plans</pluralLabel><nameField>'
        f'<displayFormat>P-{{0000}}</displayFormat><label>No</label><type>AutoNumber</type>'
        f'</nameField><sharingModel>ReadWrite</sharingModel></CustomObject>')
    (plan / "fields" / "Uuid__c.field-meta.xml").write_text(
        f'<CustomField {_NS}><fullName>Uuid__c</fullName><externalId>true</externalId>'
        f'<label>UUID</label><length>36</length><type>Text</type><unique>true</unique>'
        f'</CustomField>')
    (plan / "fields" / "Opportunity__c.field-meta.xml").write_text(
        f'<CustomField {_NS}><fullName>Opportunity__c</fullName><deleteConstraint>SetNull'
        f'</deleteConstraint><label>Opportunity</label><referenceTo>Opportunity</referenceTo>'
        f'<relationshipName>Plans</relationshipName><type>Lookup</type></CustomField>')
    step = root / "objects" / "Step__c"
    (step / "fields").mkdir(parents=True)
    (step / "Step__c.object-meta.xml").write_text(
        f'<CustomObject {_NS}><label>Step</label><pluralLabel>Steps</pluralLabel><nameField>'
        f'<label>Name</label><type>Text</type></nameField><sharingModel>ControlledByParent'
        f'</sharingModel></CustomObject>')
    (step / "fields" / "Plan__c.field-meta.xml").write_text(
        f'<CustomField {_NS}><fullName>Plan__c</fullName><label>Plan</label><referenceTo>'
        f'Plan__c</referenceTo><relationshipName>Steps</relationshipName><type>MasterDetail'
        f'</type></CustomField>')
    (step / "fields" / "Status__c.field-meta.xml").write_text(
        f'<CustomField {_NS}><fullName>Status__c</fullName><label>Status</label><type>Picklist'
        f'</type><valueSet><restricted>true</restricted><valueSetDefinition><value><fullName>'
        f'open</fullName><default>true</default><label>Open</label></value><value><fullName>'
        f'done</fullName><default>false</default><label>Done</label></value>'
        f'</valueSetDefinition></valueSet></CustomField>')
    opp = root / "objects" / "Opportunity" / "fields"
    opp.mkdir(parents=True)
    (opp / "Plan_Progress__c.field-meta.xml").write_text(
        f'<CustomField {_NS}><fullName>Plan_Progress__c</fullName><label>Progress</label>'
        f'<precision>5</precision><scale>2</scale><type>Percent</type></CustomField>')


def test_schema_from_dx_source(tmp_path):
    _write_dx(tmp_path)
    schema = load_package_schema(str(tmp_path))
    assert set(schema) == {"Plan__c", "Step__c", "Opportunity"}
    sb = SalesforceSandbox(clock=Clock(start=T0), package_source=str(tmp_path))
    sb.add_connected_app(CLIENT_ID, CLIENT_SECRET, [REDIRECT])
    org = sb.add_org("Acme", namespace="mapns")
    handle = serve(sb)
    try:
        sf = make_sf(sb.issue_tokens(org, CLIENT_ID), http_session(handle))
        opp = new_opp(sf, mapns__Plan_Progress__c=50)
        r = sf.mapns__Plan__c.upsert("mapns__Uuid__c/u-1", {"mapns__Opportunity__c": opp},
                                     raw_response=True)
        assert r.status_code == 201
        plan = sf.mapns__Plan__c.get(r.json()["id"])
        assert plan["Name"] == "P-0001"                    # AutoNumber
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.mapns__Plan__c.upsert("mapns__Uuid__c/u-1", {"Name": "x"})
        assert exc.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.mapns__Step__c.create({"Name": "s", "mapns__Plan__c": plan["Id"],
                                      "mapns__Status__c": "Open"})   # restricted picklist
        assert exc.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        sf.mapns__Step__c.create({"Name": "s", "mapns__Plan__c": plan["Id"],
                                  "mapns__Status__c": "open"})
        rows = sf.query("SELECT Name, mapns__Plan__r.mapns__Opportunity__r.Name FROM "
                        "mapns__Step__c")["records"]
        assert rows[0]["mapns__Plan__r"]["mapns__Opportunity__r"]["Name"] == "Deal"
        d = sf.mapns__Plan__c.describe()
        assert d["childRelationships"] == [{"childSObject": "mapns__Step__c",
                                            "field": "mapns__Plan__c", "cascadeDelete": True,
                                            "relationshipName": "mapns__Steps__r"}]
    finally:
        handle.shutdown()


def http_session(handle):
    s = requests.Session()
    s.verify = handle.ca_path
    s.trust_env = False
    return s


@pytest.mark.skipif(not (REPO_PACKAGE_SOURCE / "objects").is_dir(),
                    reason="salesforce_package/ not present")
def test_repo_package_schema_loads():
    sb = SalesforceSandbox()          # package_source="auto" reads salesforce_package/
    assert sb.package_source == str(REPO_PACKAGE_SOURCE)
    org = sb.add_org("Acme")
    for name in ("Mutual_Action_Plan__c", "MAP_Milestone__c"):
        st = org.stype(name)
        assert st is not None, name
        assert any(f.external_id for f in st.fields.values()), f"{name} has no external id"


def test_get_updated_and_deleted(sandbox, org, sf):
    a, b = new_opp(sf, "A"), new_opp(sf, "B")
    sandbox.clock.advance(3600)
    sandbox.rep_update(org, "Opportunity", a, {"NextStep": "Call"})
    sandbox.rep_delete(org, "Opportunity", b)
    start = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    end = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    assert sf.Opportunity.updated(start, end)["ids"] == [a]
    deleted = sf.Opportunity.deleted(start, end)["deletedRecords"]
    assert deleted == [{"id": b, "deletedDate": "2026-11-26T13:00:00.000+0000"}]


def test_concurrent_upserts_do_not_duplicate(sandbox, org, server, sf):
    from concurrent.futures import ThreadPoolExecutor
    opp = new_opp(sf)
    token = sf.session_id

    def push(i):
        s = http_session(server)
        try:
            r = s.patch(f"{server.url}/services/data/v{API_VERSION}/sobjects/Mutual_Action_Plan__c"
                        f"/External_Id__c/same-plan", json={"Name": f"P{i}",
                                                            "Opportunity__c": opp},
                        headers={"Authorization": f"Bearer {token}"})
            return r.status_code
        finally:
            s.close()
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(push, range(16)))
    assert codes.count(201) == 1 and codes.count(200) == 15
    assert len(sandbox.records(org, "Mutual_Action_Plan__c")) == 1


def test_batch_size_header_is_clamped(sandbox, org, sf):
    for i in range(205):
        sandbox.create_record(org, "Account", {"Name": f"Acc {i}"})
    r = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=5"})
    assert len(r["records"]) == 200 and r["totalSize"] == 205 and not r["done"]
    rest = sf.query_more(r["nextRecordsUrl"], identifier_is_url=True)
    assert len(rest["records"]) == 5 and rest["done"] and "nextRecordsUrl" not in rest
