"""rep home (editor and settings): the deal's name on a plan, tenants' own plan templates

Revision ID: 0005_j2
Revises: 0005_j
Create Date: 2026-11-28 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_j2'
down_revision = '0005_j'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('plans', sa.Column('deal_name', sa.String(length=200), nullable=True))
    op.create_table('plan_templates',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('default_go_live_days', sa.Integer(), nullable=False),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('default_for_pipeline', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_plan_templates_tenant_id', 'plan_templates', ['tenant_id'], unique=False)
    op.create_table('brandings',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('company_name', sa.String(length=120), nullable=False),
    sa.Column('accent', sa.String(length=7), nullable=True),
    sa.Column('contact_name', sa.String(length=200), nullable=False),
    sa.Column('contact_title', sa.String(length=200), nullable=False),
    sa.Column('contact_email', sa.String(length=254), nullable=False),
    sa.Column('logo', sa.LargeBinary(), nullable=True),
    sa.Column('logo_type', sa.String(length=20), nullable=True),
    sa.Column('photo', sa.LargeBinary(), nullable=True),
    sa.Column('photo_type', sa.String(length=20), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id')
    )


def downgrade():
    op.drop_table('brandings')
    op.drop_index('ix_plan_templates_tenant_id', table_name='plan_templates')
    op.drop_table('plan_templates')
    op.drop_column('plans', 'deal_name')
