"""the hand-off to onboarding: a plan's phase and customer-success owner, a stage's phase,
and links closed with a lost deal (restored when it reopens); the per-pipeline hand-off
settings live in installations.settings

Revision ID: 0015_g
Revises: 0015_e
Create Date: 2026-11-29 23:59:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_g'
down_revision = "0015_e"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('plans') as batch:
        # sales | onboarding | closed (webapp/onboarding.py)
        batch.add_column(sa.Column('phase', sa.String(length=20), nullable=False, server_default='sales'))
        batch.add_column(sa.Column('cs_owner', sa.String(length=254), nullable=True))
    with op.batch_alter_table('stages') as batch:
        batch.add_column(sa.Column('phase', sa.String(length=20), nullable=False, server_default='sales'))
    with op.batch_alter_table('share_links') as batch:
        # "deal_lost": revoked by the close, restored when the deal reopens
        batch.add_column(sa.Column('revoked_reason', sa.String(length=40), nullable=True))


def downgrade():
    with op.batch_alter_table('share_links') as batch:
        batch.drop_column('revoked_reason')
    with op.batch_alter_table('stages') as batch:
        batch.drop_column('phase')
    with op.batch_alter_table('plans') as batch:
        batch.drop_column('cs_owner')
        batch.drop_column('phase')
