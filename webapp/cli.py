"""The `mutualplan` command: Flask's CLI (run, routes, shell) plus ours."""
from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select

from . import create_app, migrate, plans, sharing
from .auth import create_key, ensure_tenant
from .db import database, session
from .models import Plan
from .schemas import DealRef, PlanCreate, StakeholderIn
from .web import today


@click.group(cls=FlaskGroup, create_app=create_app)
def main():
    """MutualPlan: mutual action plans inside HubSpot and Salesforce."""


@main.group()
def db():
    """Database migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision):
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(database().engine, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision):
    """Roll migrations back to REVISION."""
    migrate.downgrade(database().engine, revision)
    click.echo(f"database at {revision}")


@main.group()
def apikey():
    """API keys."""


@apikey.command("create")
@click.argument("tenant")
@click.option("--label", default="", help="A name to recognise the key by.")
@with_appcontext
def apikey_create(tenant, label):
    """Create TENANT if needed and print a new API key (the last line of output)."""
    s = session()
    row = ensure_tenant(s, tenant)
    key = create_key(s, row, label)
    s.commit()
    click.echo(f"tenant {row.name} ({row.id})")
    click.echo("The key is shown only now; store it somewhere safe:")
    click.echo(key)


DEMO_TENANT = "demo"


def seed_demo(s) -> tuple[str, Plan]:
    """The demo workspace: tenant, a fresh key, one enterprise plan (made once)."""
    tenant = ensure_tenant(s, DEMO_TENANT)
    key = create_key(s, tenant, "demo")
    plan = s.scalars(select(Plan).where(Plan.tenant_id == tenant.id,
                                        Plan.deal_id == "demo-deal-1")).first()
    if plan is None:
        data = PlanCreate(
            title="Acme Corp × MutualPlan rollout",
            template="enterprise",
            start_date=today() - timedelta(days=35),  # a plan under way: some done, one overdue
            deal=DealRef(provider="hubspot", account_id="demo-portal", deal_id="demo-deal-1"),
            value_summary="Acme's sales team loses deals in the last mile because nobody owns the "
            "steps between 'verbal yes' and signature. Together we will put every step, owner and "
            "date in one shared plan, so that Acme goes live before its Q3 kickoff.",
            objectives={
                "challenges": ["Deals stall after the demo", "No shared view of next steps"],
                "ideal_results": ["Forecast accuracy above 85%", "Sales cycle 20% shorter"],
                "deliverables": ["Shared plan for every enterprise deal", "CRM stage kept in step"],
            },
            constraints={"budget": "$48,000 / year"},
            resources=[{"title": "Security overview", "url": "https://example.com/security"}],
            stakeholders=[
                StakeholderIn(name="Dana Whitfield", title="VP Sales", email="dana@acme.example",
                              side="buyer", role="decision_maker"),
                StakeholderIn(name="Sam Ortega", title="RevOps lead", email="sam@acme.example",
                              side="buyer", role="champion"),
                StakeholderIn(name="Riley Chen", title="Account executive", email="riley@mutualplan.example",
                              side="seller", role="other"),
            ],
        )
        plan = plans.create_plan(s, tenant.id, data, "demo-seed", today())
        sharing.seed_demo_story(s, plan, today())
    s.commit()
    return key, plan


def seed_history(s, tenant_id: str, closed: int = 300) -> int:
    """A closed-plan history for the analytics page and the forecast (webapp/history.py),
    seeded once per tenant: returns the plans added (0 when it is there already)."""
    from . import history

    if s.scalars(select(Plan.id).where(Plan.tenant_id == tenant_id,
                                       Plan.deal_account_id == history.history_account(tenant_id))
                  ).first():
        return 0
    made = history.seed(s, tenant_id, closed=closed, open_plans=closed // 8)
    s.commit()
    return made["closed"] + made["open"]


@main.command("demo")
@click.option("--history", "with_history", is_flag=True,
              help="Also seed a few hundred closed plans (analytics and forecast).")
@with_appcontext
def demo(with_history=False):
    """Seed the demo workspace and print its API key and URLs."""
    key, plan = seed_demo(session())
    if with_history:
        added = seed_history(session(), plan.tenant_id)
        click.echo(f"History: {added} plans added" if added else "History: already seeded")
    base = current_app.config["PUBLIC_BASE_URL"]
    click.echo("")
    click.echo("MutualPlan demo workspace")
    click.echo(f"  API:        {base}/api/v1  (OpenAPI: {base}/api/v1/openapi.json)")
    click.echo(f"  Demo plan:  {base}/api/v1/plans/{plan.id}")
    click.echo(f"  Health:     {base}/healthz")
    click.echo(f"  Try:        curl -H 'Authorization: Bearer {key}' {base}/api/v1/plans/{plan.id}")
    s = session()
    keys = sharing.Keys.from_config(current_app.config)
    buyer_url = sharing.current_or_new_link(
        s, plans.get_plan(s, plan.tenant_id, plan.id, full=False), "demo-seed", keys)
    s.commit()
    editor_url, _ = sharing.editor_link(plan.tenant_id, plan.id, "demo rep", keys)
    click.echo(f"  Buyer page: {buyer_url}")
    click.echo(f"  Editor:     {editor_url}  (valid 15 minutes)")
    click.echo("  Demo API key (new on every start):")
    click.echo(key)


@main.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@with_appcontext
def worker(burst):
    """Run an RQ worker (needs REDIS_URL)."""
    from . import jobs

    jobs.run_worker(burst=burst)


@main.command("clock")
@with_appcontext
def clock():
    """Enqueue periodic jobs: outbox relay and sweep, reconcile pulls, token keep-alive."""
    from . import jobs

    jobs.run_clock()


@main.command("rotate-token-keys")
@with_appcontext
def rotate_token_keys():
    """Re-encrypt stored CRM tokens with the first key of TOKEN_ENCRYPTION_KEYS."""
    from .installations import rotate_keys

    click.echo(f"re-encrypted the tokens of {rotate_keys(session())} installation(s)")
