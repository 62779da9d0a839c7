"""notifications: the e-mail/Slack outbox, reminder log, unsubscribes, notification settings

Revision ID: 0008_l
Revises: 0005_h1
Create Date: 2026-11-29 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_l'
down_revision = '0005_h1'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _tenant():
    return sa.Column('tenant_id', sa.String(length=36),
                     sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False, index=True)


def upgrade():
    op.create_table(
        'notifications',
        sa.Column('id', sa.String(length=36), primary_key=True),
        sa.Column('key', sa.String(length=200), nullable=False, unique=True),
        _tenant(),
        sa.Column('plan_id', sa.String(length=36), nullable=True, index=True),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('recipient', sa.Text(), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('text_body', sa.Text(), nullable=False),
        sa.Column('html_body', sa.Text(), nullable=False),
        sa.Column('headers', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', TS, nullable=False),
        sa.Column('claimed_at', TS, nullable=True),
        sa.Column('sent_at', TS, nullable=True),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('created_at', TS, nullable=False),
    )
    op.create_index('ix_notifications_due', 'notifications', ['status', 'next_attempt_at'])
    op.create_index('ix_notifications_recipient', 'notifications',
                    ['tenant_id', 'recipient', 'created_at'])
    op.create_table(
        'reminder_log',
        sa.Column('id', sa.String(length=36), primary_key=True),
        _tenant(),
        sa.Column('milestone_id', sa.String(length=36),
                  sa.ForeignKey('milestones.id', ondelete='CASCADE'), nullable=False, index=True),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('due_date', sa.Date(), nullable=False),
        sa.Column('sent_on', sa.Date(), nullable=False),
        sa.UniqueConstraint('milestone_id', 'email', 'sent_on', name='uq_reminder_day'),
    )
    op.create_table(
        'mail_opt_outs',
        sa.Column('id', sa.String(length=36), primary_key=True),
        _tenant(),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('plan_id', sa.String(length=36), sa.ForeignKey('plans.id', ondelete='CASCADE'),
                  nullable=True),
        sa.Column('at', TS, nullable=False),
        sa.UniqueConstraint('tenant_id', 'email', 'plan_id', name='uq_mail_opt_out'),
    )
    op.create_table(
        'notification_settings',
        sa.Column('id', sa.String(length=36), primary_key=True),
        _tenant(),
        sa.Column('plan_id', sa.String(length=36), sa.ForeignKey('plans.id', ondelete='CASCADE'),
                  nullable=True),
        sa.Column('user_id', sa.String(length=36), sa.ForeignKey('users.id', ondelete='CASCADE'),
                  nullable=True),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('updated_at', TS, nullable=False),
        sa.UniqueConstraint('tenant_id', 'plan_id', 'user_id', name='uq_notify_scope'),
    )


def downgrade():
    for table in ('notification_settings', 'mail_opt_outs', 'reminder_log', 'notifications'):
        op.drop_table(table)
