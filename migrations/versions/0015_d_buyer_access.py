"""Buyer access modes per share link, and e-mail verifications with their 30-day sessions

Revision ID: 0015_d
Revises: 0014_r
Create Date: 2026-11-30 00:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_d'
down_revision = '0014_r'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('share_links', sa.Column('access_mode', sa.String(length=12), nullable=False,
                                           server_default='open'))
    op.add_column('share_links', sa.Column('allowed_domains', sa.JSON(), nullable=False,
                                           server_default=sa.text("'[]'")))
    op.create_table(
        'buyer_access',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('plan_id', sa.String(length=36), nullable=False),
        sa.Column('link_id', sa.String(length=36), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('code_expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('session_hash', sa.String(length=64), nullable=True),
        sa.Column('session_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['link_id'], ['share_links.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_hash'),
    )
    op.create_index('ix_buyer_access_link_email', 'buyer_access', ['link_id', 'email'])
    op.create_index('ix_buyer_access_tenant_id', 'buyer_access', ['tenant_id'])


def downgrade():
    op.drop_index('ix_buyer_access_tenant_id', table_name='buyer_access')
    op.drop_index('ix_buyer_access_link_email', table_name='buyer_access')
    op.drop_table('buyer_access')
    with op.batch_alter_table('share_links') as batch:
        batch.drop_column('allowed_domains')
        batch.drop_column('access_mode')
