"""card replay guard: signed HubSpot card writes accepted once

Revision ID: 0005_g2
Revises: 0005_g1
Create Date: 2026-11-27 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_g2'
down_revision = '0005_g1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('used_signatures',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('used_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_signatures_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('used_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_signatures_expires_at'))
    op.drop_table('used_signatures')
