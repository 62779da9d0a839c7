"""Salesforce-side edit (the component, LDS) -> our database, at the default poll settings,
on a simulated clock (no sleeping): the real `providers.SALESFORCE.is_due` / `poll_interval`
decide, the clock's `pull_due` task runs every CLOCK interval, a pull that applies a change
marks the org active (as sync.pull_installation does).

A simulated working week: each day a rep works in 4 sessions of 45 min, editing a milestone
every 1-5 min (random), plus 10 isolated edits at random times; nights and gaps are idle.
Prints p50/p95 of edit -> database, API calls per org per day, and the time until a
Salesforce-born plan's buyer link is on its record (poll + outbox debounce + one push).

    .venv/bin/python bench/poll_latency.py
"""
from __future__ import annotations

import random
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp import jobs, outbox
from webapp import providers as p
from webapp.models import Installation

DAYS = 7
PULL_SECONDS = 0.2  # one poll (Composite, 3 queries) against the emulator, rounded up
PUSH_SECONDS = 0.1  # one plan push (Composite)


def edits_of_a_day(day: datetime, rng: random.Random) -> list[datetime]:
    out = []
    for hour in rng.sample(range(8, 18), 4):
        t = day + timedelta(hours=hour, minutes=rng.randint(0, 14))
        end = t + timedelta(minutes=45)
        while t < end:
            out.append(t)
            t += timedelta(seconds=rng.randint(60, 300))
    out += [day + timedelta(seconds=rng.randint(0, 86399)) for _ in range(10)]
    return sorted(out)


def simulate(seed: int = 1) -> tuple[list[float], list[int]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 30, tzinfo=UTC)
    tick = dict(jobs.CLOCK)["pull_due"]
    row = Installation(status="active", created_at=start, last_pulled_at=start)
    edits = [e for d in range(DAYS) for e in edits_of_a_day(start + timedelta(days=d), rng)]
    latencies, calls_per_day = [], [0] * DAYS
    pending, now = list(edits), start
    while now < start + timedelta(days=DAYS):
        now += timedelta(seconds=tick)
        if not p.SALESFORCE.is_due(row, now):
            continue
        calls_per_day[min((now - start).days, DAYS - 1)] += 1
        seen = [e for e in pending if e <= now]
        pending = [e for e in pending if e > now]
        done = now + timedelta(seconds=PULL_SECONDS)
        latencies += [(done - e).total_seconds() for e in seen]
        row.last_pulled_at = now
        if seen:
            row.last_activity_at = now
    return latencies, calls_per_day


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    latencies, calls = simulate()
    print(f"Default poll settings: active every {p.POLL_ACTIVE:.0f} s (for "
          f"{p.ACTIVE_WINDOW} after activity, and after connect), warm every {p.POLL_WARM:.0f} s "
          f"(until {p.WARM_WINDOW}), idle every {p.POLL_IDLE:.0f} s; the clock checks every "
          f"{dict(jobs.CLOCK)['pull_due']:.0f} s; budget {p.DAILY_POLL_BUDGET} calls/org/day")
    print(f"Salesforce-side edit -> our database ({len(latencies)} edits over {DAYS} simulated "
          f"days): p50 {pct(latencies, 50):.0f} s, p95 {pct(latencies, 95):.0f} s, "
          f"max {max(latencies):.0f} s (goal p50 <= 60 s)")
    print(f"Poll cost: {statistics.mean(calls):.0f} API calls per org per day on average, "
          f"max {max(calls)} (goal <= 3,000; worst case, active all day: "
          f"{p.calls_per_day(p.POLL_ACTIVE)})")
    debounce = outbox.DEBOUNCE
    born = [lat + debounce + PUSH_SECONDS for lat in latencies]
    print(f"A Salesforce-born plan's buyer link on its record (poll + {debounce:.0f} s outbox "
          f"debounce + one push): p50 {pct(born, 50):.0f} s, p95 {pct(born, 95):.0f} s")
    _, new_org = simulate_first_edit()
    print(f"First component edit after connect (org polled at setup, then active): "
          f"{new_org:.0f} s")


def simulate_first_edit() -> tuple[None, float]:
    start = datetime(2026, 11, 30, 9, tzinfo=UTC)
    row = Installation(status="active", created_at=start, last_pulled_at=start)
    edit, now, tick = start + timedelta(minutes=3, seconds=7), start, dict(jobs.CLOCK)["pull_due"]
    while True:
        now += timedelta(seconds=tick)
        if p.SALESFORCE.is_due(row, now):
            row.last_pulled_at = now
            if now >= edit:
                return None, (now - edit).total_seconds() + PULL_SECONDS


if __name__ == "__main__":
    main()
