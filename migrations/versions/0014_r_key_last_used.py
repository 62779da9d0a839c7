"""API keys: when each was last used (shown in /settings -> API keys)

Revision ID: 0014_r
Revises: 0006_k
Create Date: 2026-11-29 22:55:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_r'
down_revision = '0006_k'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('api_keys', sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('last_used_at')
