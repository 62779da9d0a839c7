"""Alembic environment. The engine is handed in by webapp.migrate (no alembic.ini)."""
from alembic import context

from webapp import models  # noqa: F401  (registers the tables)
from webapp.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
