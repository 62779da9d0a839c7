"""rep home (editor and settings): the deal's name on a plan

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


def downgrade():
    op.drop_column('plans', 'deal_name')
