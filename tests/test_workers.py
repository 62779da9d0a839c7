"""Several workers at once (threads here, processes in production), RQ on Redis,
and the shared per-account rate limiter."""
import os
import threading
import uuid

import pytest
from sqlalchemy import select

from connector.errors import RateLimited
from connector.memory import MemoryCrm
from connector.ratelimit import RedisTokenBucket, TokenBucket
from webapp import jobs, outbox, providers
from webapp.db import session
from webapp.models import Installation, OutboxEntry, Tenant

REDIS_URL = os.environ.get("REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set (CI sets it)")


@pytest.fixture
def crm():
    return MemoryCrm(latency=0.002)


@pytest.fixture
def installation(app, api, crm):
    providers.override(app, "hubspot", connector=lambda inst, _store: crm.connector(inst.account_id))
    with app.app_context():
        s = session()
        tenant = s.scalars(select(Tenant).where(Tenant.name == "acme")).one()
        s.add(Installation(tenant_id=tenant.id, provider="hubspot", account_id="acct-1", settings={}))
        s.commit()


def make_plans(api, crm, n):
    ids = []
    for i in range(n):
        crm.add_deal(f"d{i}")
        response = api.post("/plans", json={"title": f"P{i}", "template": "quick",
                                            "deal": {"provider": "hubspot", "account_id": "acct-1",
                                                     "deal_id": f"d{i}"}})
        ids.append(response.json["id"])
    return ids


def in_threads(app, n, fn):
    results, errors = [], []

    def target():
        try:
            with app.app_context():
                results.append(fn())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_claims_never_take_a_row_twice(app, api, installation, crm):
    make_plans(api, crm, 40)

    def claim_all():
        mine = []
        while True:
            got = outbox.claim(session(), jobs.worker_name(), limit=3)
            if not got:
                return mine
            mine += got

    claimed = [i for batch in in_threads(app, 4, claim_all) for i in batch]
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_four_workers_push_everything_exactly_once(app, api, installation, crm):
    plan_ids = make_plans(api, crm, 30)
    in_threads(app, 4, jobs.relay)
    assert set(crm.plans) == set(plan_ids)
    assert all(crm.writes[pid] == 1 for pid in plan_ids)
    with app.app_context():
        statuses = session().scalars(select(OutboxEntry.status)).all()
    assert set(statuses) == {"done"}


def test_token_bucket_waits_briefly_then_defers():
    t = [0.0]
    slept = []
    bucket = TokenBucket(rate=10, capacity=10, max_wait=0.5, clock=lambda: t[0], sleep=slept.append)
    for _ in range(10):
        assert bucket.acquire("portal-1") == 0
    assert bucket.acquire("portal-1") == pytest.approx(0.1)
    assert slept == [pytest.approx(0.1)]
    for _ in range(4):
        bucket.acquire("portal-1")
    with pytest.raises(RateLimited) as raised:
        bucket.acquire("portal-1")
    assert raised.value.retry_after > 0.5
    assert bucket.acquire("portal-2") == 0  # accounts do not share a bucket
    t[0] += 10
    assert bucket.acquire("portal-1") == 0


def test_the_bucket_never_allows_more_than_110_in_10_seconds():
    t = [0.0]

    def sleep(seconds):
        t[0] += seconds

    bucket = TokenBucket(rate=10, capacity=10, max_wait=60, clock=lambda: t[0], sleep=sleep)
    stamps = []
    for _ in range(500):
        bucket.acquire("p")
        stamps.append(t[0])
    worst = max(sum(1 for s in stamps if start <= s < start + 10) for start in stamps)
    assert worst <= 110


@needs_redis
def test_redis_bucket_is_shared_between_workers():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    key = f"test-{uuid.uuid4()}"
    first = RedisTokenBucket(client, rate=1, capacity=3, max_wait=0.01)
    second = RedisTokenBucket(client, rate=1, capacity=3, max_wait=0.01)
    first.acquire(key)
    second.acquire(key)
    first.acquire(key)
    with pytest.raises(RateLimited):
        second.acquire(key)  # the third token was taken by the other worker


@needs_redis
@pytest.mark.parametrize("app_config", [{"JOBS_MODE": "rq", "REDIS_URL": REDIS_URL}])
def test_rq_worker_runs_the_relay(app, api, installation, crm):
    from rq import SimpleWorker

    state = app.extensions[jobs.EXT]
    state["queue"].empty()
    make_plans(api, crm, 3)
    assert state["queue"].count >= 1  # kicked after commit, not run in the request
    assert crm.plans == {}
    with app.app_context():
        SimpleWorker([state["queue"]], connection=state["redis"]).work(burst=True)
    assert len(crm.plans) == 3
