"""analytics rollup: plan_rollups, milestone_steps, win_rate_cache (backfilled)

Revision ID: 0015_f
Revises: 0015_c
Create Date: 2026-11-30 00:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_f'
down_revision = "0015_c"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'plan_rollups',
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('outcome', sa.String(length=10), nullable=False),
        sa.Column('p_stage', sa.Float(), nullable=True),
        sa.Column('furthest_step', sa.Integer(), nullable=False),
        sa.Column('furthest_title', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('plan_id'),
    )
    op.create_index('ix_plan_rollups_tenant_id', 'plan_rollups', ['tenant_id'])
    op.create_table(
        'milestone_steps',
        sa.Column('milestone_id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('stage', sa.String(length=120), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('days', sa.Float(), nullable=True),
        sa.Column('stage_complete', sa.Boolean(), nullable=False),
        sa.Column('stage_days', sa.Float(), nullable=True),
        sa.Column('reached', sa.Boolean(), nullable=False),
        sa.Column('outcome', sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(['milestone_id'], ['milestones.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('milestone_id'),
    )
    op.create_index('ix_milestone_steps_plan_id', 'milestone_steps', ['plan_id'])
    op.create_index('ix_milestone_steps_tenant_title', 'milestone_steps', ['tenant_id', 'title'])
    op.create_table(
        'win_rate_cache',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('rates', sa.JSON(), nullable=True),
        sa.Column('computed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tenant_id'),
    )
    # Backfill with the code that keeps the rollup on write, so both agree by construction.
    from sqlalchemy.orm import Session

    from webapp import rollups

    with Session(bind=op.get_bind()) as s:
        rollups.backfill(s)
        s.flush()


def downgrade():
    op.drop_table('win_rate_cache')
    op.drop_table('milestone_steps')
    op.drop_table('plan_rollups')
