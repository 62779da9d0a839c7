"""sync: installations, stage mappings, outbox, mirrors

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:10:06.439477
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('oauth_states',
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('state_hash')
    )

    op.create_table('installations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('tokens', sa.Text(), nullable=True),
    sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('pull_state', sa.JSON(), nullable=False),
    sa.Column('last_pulled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'account_id', name='uq_installation_account')
    )
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_installations_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('mirrors',
    sa.Column('plan_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('remote_ids', sa.JSON(), nullable=False),
    sa.Column('pushed_hashes', sa.JSON(), nullable=False),
    sa.Column('pushed_deal', sa.JSON(), nullable=False),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deal_pipeline', sa.String(length=64), nullable=True),
    sa.Column('deal_stage', sa.String(length=64), nullable=True),
    sa.Column('deal_close_date', sa.Date(), nullable=True),
    sa.Column('deal_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('mismatch', sa.JSON(), nullable=True),
    sa.Column('pushes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('plan_id')
    )
    with op.batch_alter_table('mirrors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mirrors_installation_id'), ['installation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mirrors_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('plan_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_installation_id'), ['installation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('uq_outbox_pending_plan', ['plan_id'], unique=True, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))

    op.create_table('stage_mappings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('pipeline_id', sa.String(length=64), nullable=False),
    sa.Column('gates', sa.JSON(), nullable=False),
    sa.Column('close_milestone', sa.String(length=200), nullable=True),
    sa.Column('allow_closed', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('installation_id', 'pipeline_id', name='uq_stage_mapping')
    )
    with op.batch_alter_table('stage_mappings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stage_mappings_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True))




def downgrade():
    op.drop_table('oauth_states')

    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('archived_at')

    with op.batch_alter_table('stage_mappings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_mappings_tenant_id'))

    op.drop_table('stage_mappings')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('uq_outbox_pending_plan', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_outbox_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_installation_id'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    with op.batch_alter_table('mirrors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mirrors_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_mirrors_installation_id'))

    op.drop_table('mirrors')
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_installations_tenant_id'))

    op.drop_table('installations')

