"""The OpenAPI document stays true: valid, complete, and matching real responses."""
import re

import jsonschema
import pytest
from openapi_spec_validator import validate

from webapp.openapi import document


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def test_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_route_is_documented_and_nothing_else(app, spec):
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint.startswith("openapi."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        routes |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented


def _schema_for(spec, method, path, status):
    op = spec["paths"][path][method]
    content = op["responses"][str(status)].get("content")
    if not content:
        return None
    schema = next(iter(content.values()))["schema"]
    return {**schema, "components": spec["components"]}


def _check(spec, method, path, response):
    schema = _schema_for(spec, method, path, response.status_code)
    if schema is None:
        assert response.data == b""
        return
    resolver_schema = {"$ref": schema["$ref"], "components": spec["components"]} if "$ref" in schema else schema
    jsonschema.validate(response.json, resolver_schema, cls=jsonschema.Draft202012Validator)


def test_real_responses_match_the_document(api, plan, spec):
    pid = plan["id"]
    stage = plan["stages"][0]
    m = stage["milestones"][0]
    calls = [
        ("get", "/templates", api.get("/templates")),
        ("get", "/plans", api.get("/plans")),
        ("get", "/plans/{plan_id}", api.get(f"/plans/{pid}")),
        ("patch", "/plans/{plan_id}", api.patch(f"/plans/{pid}", json={"title": "New"})),
        ("get", "/plans/{plan_id}/activity", api.get(f"/plans/{pid}/activity")),
        ("post", "/plans/{plan_id}/stages", api.post(f"/plans/{pid}/stages", json={"name": "S"})),
        ("patch", "/stages/{stage_id}", api.patch(f"/stages/{stage['id']}", json={"name": "D"})),
        ("post", "/plans/{plan_id}/milestones",
         api.post(f"/plans/{pid}/milestones", json={"stage_id": stage["id"], "title": "M"})),
        ("get", "/milestones/{milestone_id}", api.get(f"/milestones/{m['id']}")),
        ("patch", "/milestones/{milestone_id}", api.patch(f"/milestones/{m['id']}", json={"status": "done"})),
        ("post", "/plans/{plan_id}/stakeholders",
         api.post(f"/plans/{pid}/stakeholders", json={"name": "P", "side": "buyer"})),
        ("patch", "/plans/{plan_id}", api.patch(f"/plans/{pid}", json={"title": ""})),
        ("get", "/plans/{plan_id}", api.get("/plans/" + "0" * 36)),
        ("post", "/plans", api.post("/plans", data="{", headers={"Content-Type": "application/json"})),
    ]
    for method, path, response in calls:
        assert str(response.status_code) in spec["paths"][path][method]["responses"], (method, path)
        _check(spec, method, path, response)
    person = calls[10][2].json
    response = api.patch(f"/stakeholders/{person['id']}", json={"title": "CFO"})
    _check(spec, "patch", "/stakeholders/{stakeholder_id}", response)
    for method, path, url in [("delete", "/stakeholders/{stakeholder_id}", f"/stakeholders/{person['id']}"),
                              ("delete", "/milestones/{milestone_id}", f"/milestones/{m['id']}"),
                              ("delete", "/plans/{plan_id}", f"/plans/{pid}")]:
        response = api.delete(url)
        assert response.status_code == 204
        _check(spec, method, path, response)


def test_document_is_cached_and_stable():
    assert document() is document()
