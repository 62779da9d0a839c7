"""Regenerate the screenshots in docs/ from the demo plan (headless system Chromium).

    .venv/bin/python docs/screenshots.py
"""
from __future__ import annotations

import sys
import tempfile
import threading
from datetime import date, timedelta
from pathlib import Path

from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.memory import DEFAULT_PIPELINE
from webapp import clock, create_app, migrate, mirror, plans, sharing, users
from webapp.cli import seed_demo, seed_history
from webapp.db import make_engine, session
from webapp.models import Activity, Installation, Mirror, Slip
from webapp.schemas import DealRef, PlanCreate

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tempfile.mkdtemp()}/docs.db"
    migrate.upgrade(make_engine(url))
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "docs", "LOG_LEVEL": "WARNING",
                      "TODAY": lambda: date(2026, 11, 26)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        s = session()
        _, plan = seed_demo(s)
        keys = sharing.Keys.from_config(app.config)
        _, link = sharing.create_link(s, plan, "docs", keys)
        s.commit()
        _connect_demo(s, plan)
        admin = users.upsert_user(s, plan.tenant_id, "hubspot", "42", email="ada@seller.example",
                                  name="Ada Admin", role="admin")
        _, admin_token = users.start_session(s, tenant_id=plan.tenant_id, actor=users.actor_of(admin),
                                             user=admin)
        s.commit()
        _more_plans(s, plan.tenant_id, admin, date(2026, 11, 26))
        editor, _ = sharing.editor_link(plan.tenant_id, plan.id, "riley@mutualplan.example", keys)
        base = app.config["PUBLIC_BASE_URL"]
        admin_tenant = plan.tenant_id
    out = ROOT / "docs"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        desktop = browser.new_page(viewport={"width": 1280, "height": 900})
        desktop.goto(link)
        desktop.screenshot(path=str(out / "buyer-desktop.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                 is_mobile=True, has_touch=True)
        phone.goto(link)
        phone.screenshot(path=str(out / "buyer-phone.png"))
        rep = browser.new_page(viewport={"width": 1280, "height": 900})
        rep.goto(editor)
        rep.screenshot(path=str(out / "editor.png"))
        rep.locator("#crm").screenshot(path=str(out / "editor-crm-panel.png"))
        rep_phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                     is_mobile=True, has_touch=True)
        written = ["buyer-desktop.png", "buyer-phone.png", "editor.png", "editor-crm-panel.png"]
        with app.app_context():  # editor links are single-use: a second one for the phone
            phone_link, _ = sharing.editor_link(plan.tenant_id, plan.id, "riley@mutualplan.example", keys)
        rep_phone.goto(phone_link)
        rep_phone.locator("#crm").screenshot(path=str(out / "editor-crm-panel-phone.png"))
        written.append("editor-crm-panel-phone.png")
        for viewport, suffix in (({"width": 1280, "height": 900}, ""), ({"width": 390, "height": 844}, "-phone")):
            ctx = browser.new_context(viewport=viewport, device_scale_factor=2 if suffix else 1,
                                      is_mobile=bool(suffix), has_touch=bool(suffix))
            ctx.add_cookies([{"name": users.COOKIE, "value": admin_token, "url": base}])
            page = ctx.new_page()
            for name in ("connections", "mapping", "templates", "branding", "team", "keys"):
                page.goto(f"{base}/settings/{name}")
                page.screenshot(path=str(out / f"settings-{name}{suffix}.png"), full_page=not suffix)
                written.append(f"settings-{name}{suffix}.png")
            page.goto(f"{base}/app")
            page.screenshot(path=str(out / f"dashboard{suffix}.png"), full_page=not suffix)
            written.append(f"dashboard{suffix}.png")
            ctx.close()
        with app.app_context():  # after the dashboards, which would otherwise list these plans
            seed_history(session(), admin_tenant)  # the analytics page's closed plans
            session().commit()
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.add_cookies([{"name": users.COOKIE, "value": admin_token, "url": base}])
        page = ctx.new_page()
        page.goto(f"{base}/analytics")
        page.screenshot(path=str(out / "analytics.png"), full_page=True)
        written.append("analytics.png")
        ctx.close()
        browser.close()
    server.shutdown()
    print("wrote " + ", ".join(f"docs/{name}" for name in written))


def _connect_demo(s, plan) -> None:
    """The demo plan as if its HubSpot portal were connected and its deal already further
    along than the plan (so the editor's CRM panel shows its advice); no CRM is called."""
    stages = list(DEFAULT_PIPELINE)
    s.add(Installation(id="demo-installation", tenant_id=plan.tenant_id, provider="hubspot",
                       account_id=plan.deal_account_id,
                       settings={"mode": "deal_properties", "default_pipeline": "default",
                                 "pipelines": {"default": [vars(st) for st in stages]}},
                       last_pulled_at=clock.now()))
    plan.deal_name = "Acme Corp: sales platform rollout"
    decision = mirror.decide([mirror.MilestoneState(m.title, m.status == "done", m.due_date)
                              for m in plan.milestones], mirror.default_mapping(stages), stages,
                             mirror.DealState("decisionmakerboughtin"), mirror.LastWrite(), {})
    s.add(Mirror(plan_id=plan.id, tenant_id=plan.tenant_id, installation_id="demo-installation",
                 remote_ids={}, pushed_hashes={}, pushed_deal={}, deal_pipeline="default",
                 deal_stage="decisionmakerboughtin", pushed_at=clock.now(), mismatch=decision.mismatch))
    s.flush()


def _more_plans(s, tenant_id: str, owner, today: date) -> None:
    """A few more plans for the dashboard, one per state its filters pick out: on track with a
    milestone due this week, off track, slipped, and one the buyer worked on yesterday."""
    made = {}
    for n, title in enumerate(("Globex: analytics pilot", "Initech: CRM migration",
                               "Umbrella: EMEA expansion", "Hooli: security review")):
        data = PlanCreate(title=title, template="quick", start_date=today - timedelta(days=3),
                          deal=DealRef(provider="hubspot", account_id="demo-portal",
                                       deal_id=f"demo-deal-{n + 2}"))
        made[title] = plan = plans.create_plan(s, tenant_id, data, "docs", today)
        users.claim_plan(s, plan, owner, "docs")
        for i, m in enumerate(sorted(plan.milestones, key=lambda m: m.position)):
            m.due_date = today + timedelta(days=4 + 9 * i)
    s.flush()
    initech = sorted(made["Initech: CRM migration"].milestones, key=lambda m: m.position)
    initech[0].risk = "off_track"
    umbrella = made["Umbrella: EMEA expansion"]
    first = min(umbrella.milestones, key=lambda m: m.position)
    s.add(Slip(tenant_id=tenant_id, plan_id=umbrella.id, milestone_id=first.id,
               old_date=first.due_date - timedelta(days=12), new_date=first.due_date, actor="docs"))
    hooli = made["Hooli: security review"]
    s.add(Activity(tenant_id=tenant_id, plan_id=hooli.id, actor="buyer:Dana <dana@hooli.example>",
                   action="comment.added", at=clock.now() - timedelta(days=1)))
    s.commit()


if __name__ == "__main__":
    main()
