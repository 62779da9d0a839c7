"""buyer actions waiting for the CRM timeline (HubSpot timeline events / notes, Salesforce tasks);
buyer_views.previous_seen (a viewer's first view of the day opens a timeline entry)

Revision ID: 0015_c
Revises: 0015_h
Create Date: 2026-11-30 00:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_c'
down_revision = "0015_h"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'crm_activity',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_crm_activity_plan_pending', 'crm_activity', ['plan_id', 'pushed_at'])
    op.create_index('ix_crm_activity_tenant_id', 'crm_activity', ['tenant_id'])
    op.add_column('buyer_views', sa.Column('previous_seen', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('buyer_views') as batch:
        batch.drop_column('previous_seen')
    op.drop_index('ix_crm_activity_tenant_id', table_name='crm_activity')
    op.drop_index('ix_crm_activity_plan_pending', table_name='crm_activity')
    op.drop_table('crm_activity')
