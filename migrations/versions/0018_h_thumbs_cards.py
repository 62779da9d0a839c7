"""Deck thumbnails (content_blocks.thumb_key) and each rep's own contact card (contact_cards)

Revision ID: 0015_h
Revises: 0015_g
Create Date: 2026-11-30 00:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_h'
down_revision = "0015_g"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('content_blocks', sa.Column('thumb_key', sa.String(length=200), nullable=True))
    op.create_table('contact_cards',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('photo', sa.LargeBinary(), nullable=True),
    sa.Column('photo_type', sa.String(length=20), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_index('ix_contact_cards_tenant_id', 'contact_cards', ['tenant_id'], unique=False)


def downgrade():
    op.drop_index('ix_contact_cards_tenant_id', table_name='contact_cards')
    op.drop_table('contact_cards')
    with op.batch_alter_table('content_blocks') as batch:
        batch.drop_column('thumb_key')
