"""MutualPlan's Flask application factory."""
from __future__ import annotations

from flask import Flask, jsonify
from sqlalchemy import text

from . import db, errors, logs
from .config import Config


def create_app(config: Config | dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    settings = config if isinstance(config, Config) else Config(**(config or {}))
    app.config.from_mapping(settings.as_dict())
    app.json.sort_keys = False

    logs.init_app(app)
    db.init_app(app)
    errors.register(app)

    from .blueprints import api
    from . import openapi

    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)

    @app.get("/healthz")
    def healthz():
        try:
            db.session().execute(text("SELECT 1"))
        except Exception as exc:  # the load balancer only needs yes or no
            app.logger.warning("health check failed: %s", exc)
            return jsonify(status="unavailable", database="unreachable"), 503
        return jsonify(status="ok", database="ok")

    return app
