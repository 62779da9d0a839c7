"""milestone dependencies: due "N days after X is done" (or after X's due date)

Revision ID: 0008_m
Revises: 0008_n
Create Date: 2026-11-29 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_m'
down_revision = '0008_n'
branch_labels = None
depends_on = None


def upgrade():
    # [{"milestone_id", "days", "after": "done" | "due"}], ids of the same plan (webapp/dependencies.py)
    with op.batch_alter_table('milestones') as batch:
        batch.add_column(sa.Column('depends_on', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('milestones') as batch:
        batch.drop_column('depends_on')
