"""hubspot: webhook event dedupe and pending deal deletions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 16:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('hubspot_events',
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('hubspot_events', schema=None) as batch_op:
        batch_op.create_index('ix_hubspot_events_pending', ['installation_id', 'kind', 'processed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_hubspot_events_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_hubspot_events_tenant_id'), ['tenant_id'], unique=False)


def downgrade():
    with op.batch_alter_table('hubspot_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hubspot_events_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_hubspot_events_received_at'))
        batch_op.drop_index('ix_hubspot_events_pending')
    op.drop_table('hubspot_events')
