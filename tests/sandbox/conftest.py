"""Fixtures shared by the sandbox tests (test_*_sandbox.py and test_*_platform_rules.py).

HubSpot modules define nothing of their own here: `sb` (a default HubSpotSandbox), `server`
(it over real HTTP), `hs_app` (its app) and `ent` (an SDK client of the Enterprise portal).
Salesforce modules define their own `sandbox` (strict, or with a frozen clock) and get `org`,
`server` (over real HTTPS with a local CA) and `http` (a requests session trusting that CA).
"""
from __future__ import annotations

import pytest
import requests
from hubspot import HubSpot
from urllib3.util.retry import Retry

from sandboxes.hubspot import HubSpotSandbox
from sandboxes.hubspot import serve as serve_hubspot
from sandboxes.salesforce import serve as serve_salesforce

ENT = 100001


@pytest.fixture
def sb():
    return HubSpotSandbox()


@pytest.fixture
def hs_app(sb):
    return next(iter(sb.apps.values()))


@pytest.fixture
def ent(sb, server):
    """How the connector builds the SDK: the sandbox URL as host, the SDK's own retries off."""
    token = sb.issue_tokens(ENT)["access_token"]
    return HubSpot(access_token=token, host=server.url, retry=Retry(total=0, redirect=0))


@pytest.fixture
def server(request):
    """The module's sandbox on a real server: Salesforce's `sandbox` in the Salesforce modules,
    HubSpot's `sb` in the others."""
    if "salesforce" in request.module.__name__:
        handle = serve_salesforce(request.getfixturevalue("sandbox"))
    else:
        handle = serve_hubspot(request.getfixturevalue("sb"))
    yield handle
    handle.shutdown()


@pytest.fixture
def org(sandbox):
    return next(iter(sandbox.orgs.values()))


@pytest.fixture
def http(server):
    s = requests.Session()
    s.verify = server.ca_path
    s.trust_env = False
    yield s
    s.close()
