"""MutualPlan's Flask application factory."""
from __future__ import annotations

from flask import Flask, jsonify, render_template
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import db, errors, logs, security
from .config import DEV_SECRET_KEY, Config


def create_app(config: Config | dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    settings = config if isinstance(config, Config) else Config(**(config or {}))
    if settings.SECRET_KEY == DEV_SECRET_KEY and not settings.DATABASE_URL.startswith("sqlite"):
        # Editor links, buyer cookies and CSRF tokens are signed with it: a known key forges them.
        raise RuntimeError("SECRET_KEY must be set (long and random) when DATABASE_URL is not the "
                           "embedded SQLite database.")
    app.config.from_mapping(settings.as_dict())
    app.json.sort_keys = False

    security.apply_proxy_fix(app)  # TRUSTED_PROXIES decides the client address and scheme
    logs.init_app(app)
    security.init_app(app)  # CSP, frame-ancestors, nosniff, Referrer-Policy, HSTS
    db.init_app(app)
    errors.register(app)
    from . import jobs  # also registers the outbox hook on plan changes

    jobs.init_app(app)

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

    from .blueprints import analytics  # /analytics, /api/v1/analytics/...

    app.register_blueprint(analytics.bp)
    app.register_blueprint(analytics.api_bp)

    from . import localdemo

    if localdemo.sandbox_url(app.config):  # `make run` against the local HubSpot sandbox
        app.register_blueprint(localdemo.bp)

    @app.get("/")
    def home():
        local = ("http://127.0.0.1", "http://localhost", "https://127.0.0.1", "https://localhost")
        return render_template(
            "home.html",
            hubspot_sandbox=app.config["HUBSPOT_API_BASE"].startswith(local),
            salesforce_sandbox=app.config["SALESFORCE_LOGIN_URL"].startswith(local))

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
