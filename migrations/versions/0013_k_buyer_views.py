"""buyer page views per link and viewer (analytics: engagement, health)

Revision ID: 0006_k
Revises: 0008_m
Create Date: 2026-11-28 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_k'
down_revision = '0008_m'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'buyer_views',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('link_id', sa.String(length=36), nullable=False),
        sa.Column('viewer_email', sa.String(length=254), nullable=False),
        sa.Column('viewer_name', sa.String(length=200), nullable=False),
        sa.Column('views', sa.Integer(), nullable=False),
        sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['link_id'], ['share_links.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('link_id', 'viewer_email', name='uq_buyer_view_link_viewer'),
    )
    op.create_index('ix_buyer_views_plan_seen', 'buyer_views', ['plan_id', 'last_seen'])
    op.create_index('ix_buyer_views_tenant_id', 'buyer_views', ['tenant_id'])


def downgrade():
    op.drop_index('ix_buyer_views_tenant_id', table_name='buyer_views')
    op.drop_index('ix_buyer_views_plan_seen', table_name='buyer_views')
    op.drop_table('buyer_views')
