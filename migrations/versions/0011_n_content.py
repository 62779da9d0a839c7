"""content blocks on plans (links, videos, decks, notes, files) and their engagement events

Revision ID: 0008_n
Revises: 0008_l
Create Date: 2026-11-29 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_n'
down_revision = '0008_l'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'content_blocks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('milestone_id', sa.String(length=36), nullable=True),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('embed_url', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('internal', sa.Boolean(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('side', sa.String(length=10), nullable=False),
        sa.Column('file_key', sa.String(length=200), nullable=True),
        sa.Column('file_name', sa.String(length=200), nullable=False),
        sa.Column('file_type', sa.String(length=100), nullable=False),
        sa.Column('file_size', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['milestone_id'], ['milestones.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_content_blocks_tenant_id', 'content_blocks', ['tenant_id'])
    op.create_index('ix_content_blocks_milestone_id', 'content_blocks', ['milestone_id'])
    op.create_index('ix_content_blocks_plan', 'content_blocks', ['plan_id', 'position'])
    op.create_table(
        'content_events',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('block_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('viewer', sa.String(length=200), nullable=False),
        sa.Column('side', sa.String(length=10), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['block_id'], ['content_blocks.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_content_events_tenant_id', 'content_events', ['tenant_id'])
    op.create_index('ix_content_events_block_id', 'content_events', ['block_id'])
    op.create_index('ix_content_events_plan_at', 'content_events', ['plan_id', 'at'])


def downgrade():
    op.drop_table('content_events')
    op.drop_table('content_blocks')
