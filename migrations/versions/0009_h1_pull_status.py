"""pull status: the last pull error, consecutive failures and when the next pull is due;
outbox payload (a plan deleted here: what to remove in the CRM)

Revision ID: 0005_h1
Revises: 0005_j2
Create Date: 2026-11-29 21:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005_h1'
down_revision = '0005_j2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('installations') as batch:
        batch.add_column(sa.Column('last_pull_error', sa.Text(), nullable=False,
                                   server_default=''))
        batch.add_column(sa.Column('pull_failures', sa.Integer(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('next_pull_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('outbox', sa.Column('payload', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('payload')
    with op.batch_alter_table('installations') as batch:
        batch.drop_column('next_pull_at')
        batch.drop_column('pull_failures')
        batch.drop_column('last_pull_error')
