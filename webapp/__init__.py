"""MutualPlan's Flask application factory."""
from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import db, errors, logs, rollups, security  # noqa: F401  (rollups: its session events)
from .config import DEV_SECRET_KEY, Config


def refuse_unsafe_settings(settings: Config) -> None:
    """Start-up checks: development conveniences never reach production (a database that is
    not the embedded SQLite one), where each would silently weaken security."""
    if settings.production and settings.SECRET_KEY == DEV_SECRET_KEY:
        # Editor links, buyer cookies and CSRF tokens are signed with it: a known key forges them.
        raise RuntimeError("SECRET_KEY must be set (long and random) when DATABASE_URL is not the "
                           "embedded SQLite database.")
    if settings.production and not settings.token_keys:
        # The fallback derives the key from SECRET_KEY: one leaked secret would open every stored
        # CRM token, and rotating SECRET_KEY would lose them all.
        raise RuntimeError("TOKEN_ENCRYPTION_KEYS must be set (comma-separated Fernet keys) when "
                           "DATABASE_URL is not the embedded SQLite database.")
    if settings.HUBSPOT_DEV_PROXY_SIGNING and not settings.local:
        # It accepts a signature HubSpot's production servers never make: development only.
        raise RuntimeError("HUBSPOT_DEV_PROXY_SIGNING is for local development only: it needs the "
                           "embedded SQLite database and a localhost PUBLIC_BASE_URL.")


def create_app(config: Config | dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    settings = config if isinstance(config, Config) else Config(**(config or {}))
    refuse_unsafe_settings(settings)
    app.config.from_mapping(settings.as_dict())
    app.json.sort_keys = False
    from .models import ROLE_LABELS

    app.jinja_env.globals["ROLE_LABELS"] = ROLE_LABELS  # one list for the editor and the buyer page

    security.apply_proxy_fix(app)  # TRUSTED_PROXIES decides the client address and scheme
    logs.init_app(app)
    security.init_app(app)  # CSP, frame-ancestors, nosniff, Referrer-Policy, HSTS
    db.init_app(app)
    errors.register(app)
    from . import jobs  # also registers the outbox hook on plan changes

    jobs.init_app(app)
    from . import view_counter

    view_counter.init_app(app)  # buyer page views, buffered; jobs' flush_views writes them

    from . import openapi
    from .blueprints import api

    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)

    from .blueprints import buyer, editor

    app.register_blueprint(buyer.bp)
    app.register_blueprint(buyer.api_bp)
    app.register_blueprint(editor.bp)
    app.register_blueprint(editor.api_bp)

    from . import providers  # one Provider record per CRM: connector, OAuth, setup, schedule
    from .blueprints import connect, hubspot, salesforce

    providers.init_app(app)
    app.register_blueprint(connect.bp)  # install + OAuth callback, the same for every CRM
    app.register_blueprint(hubspot.bp)  # webhooks, card API
    app.register_blueprint(salesforce.bp)  # disconnect

    from . import users
    from .blueprints import account, workspace

    users.init_app(app)  # csrf_token() and current_user() in templates
    app.register_blueprint(account.bp)  # /login, /logout
    app.register_blueprint(workspace.bp)  # /app

    from .blueprints import settings

    app.register_blueprint(settings.bp)  # /settings, admins only

    from . import branding

    branding.init_app(app)  # /brand/<tenant>/<version>.css, branding_for() in templates

    from .blueprints import notify

    notify.init_app(app)  # reminder links, unsubscribe, /app/notifications, /local/mail

    from . import content
    from .blueprints import content as content_routes

    app.register_blueprint(content_routes.api_bp)  # /api/v1/plans/<id>/blocks
    app.register_blueprint(content_routes.files_bp)  # /files/<signed token> (local store)
    app.register_blueprint(content_routes.buyer_bp)  # /p/<token>/blocks/…, milestone uploads
    app.register_blueprint(content_routes.editor_bp)  # /editor/plans/<id>/content
    content.init_storage_hooks(db.database(app).Session.session_factory,
                               lambda: content_routes.store_of(app))

    from .blueprints import analytics  # /analytics, /api/v1/analytics/...

    app.register_blueprint(analytics.bp)
    app.register_blueprint(analytics.api_bp)

    from .blueprints import webhooks  # /api/v1/webhooks, /settings/webhooks

    webhooks.init_app(app)

    from . import localdemo

    if localdemo.sandbox_url(app.config):  # `make run` against the local HubSpot sandbox
        app.register_blueprint(localdemo.bp)

    @app.get("/")
    def home():
        local = ("http://127.0.0.1", "http://localhost", "https://127.0.0.1", "https://localhost")
        hubspot_sandbox = app.config["HUBSPOT_API_BASE"].startswith(local)
        salesforce_sandbox = app.config["SALESFORCE_LOGIN_URL"].startswith(local)
        demo = _demo_links() if hubspot_sandbox or salesforce_sandbox else None
        return render_template("home.html", hubspot_sandbox=hubspot_sandbox,
                               salesforce_sandbox=salesforce_sandbox, demo=demo)

    @app.get("/healthz")
    def healthz():
        """Each dependency the app needs: 200 when all answer, 503 naming the one that does
        not (the database; Redis when REDIS_URL is set, as jobs and shared limits need it)."""
        checks = {"database": _check_database}
        if app.config.get("REDIS_URL"):
            checks["redis"] = _check_redis
        report = {name: check(app) for name, check in checks.items()}
        ok = all(v == "ok" for v in report.values())
        return jsonify(status="ok" if ok else "unavailable", **report), 200 if ok else 503

    return app


def _demo_links() -> dict | None:
    """A local run's demo plan (`flask demo` seeds it): its buyer page and a fresh editor link
    (single-use, 15 minutes, so minted per visit). Only with the sandboxes: no real account
    has a plan on the "demo-deal-1" deal."""
    from sqlalchemy import select

    from . import plans, sharing
    from .models import Plan

    s = db.session()
    plan = s.scalars(select(Plan).where(Plan.deal_account_id == "demo-portal",
                                        Plan.deal_id == "demo-deal-1")).first()
    if plan is None:
        return None
    keys = sharing.Keys.from_config(current_app.config)
    buyer = sharing.current_or_new_link(s, plans.get_plan(s, plan.tenant_id, plan.id, full=False),
                                        "demo-seed", keys)
    s.commit()
    editor, _ = sharing.editor_link(plan.tenant_id, plan.id, "demo rep", keys)
    return {"title": plan.title, "buyer": buyer, "editor": editor}


def _check_database(app: Flask) -> str:
    try:
        db.session().execute(text("SELECT 1"))
    except SQLAlchemyError as exc:  # the load balancer only needs yes or no
        app.logger.warning("health check: database unreachable: %s", exc.__class__.__name__)
        return "unreachable"
    return "ok"


def _check_redis(app: Flask) -> str:
    import redis

    client = app.extensions.get("mutualplan.health_redis")
    if client is None:
        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=1,
                                      socket_timeout=1)
        app.extensions["mutualplan.health_redis"] = client
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        app.logger.warning("health check: redis unreachable: %s", exc.__class__.__name__)
        return "unreachable"
    return "ok"
