"""raised hands (help_requests), stuck flags, and a failing-check streak per progress row

Additive only: two new tables and two columns with defaults on lab_progress, so
a room's database upgrades in place (existing rows start with no streak).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 13:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'help_requests',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('node_id', sa.String(length=32), nullable=False),
        sa.Column('attendee_id', sa.String(length=32), nullable=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('lab', sa.String(length=64), nullable=False),
        sa.Column('step', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_by', sa.String(length=160), nullable=True),
        sa.Column('claimed_at', sa.DateTime(), nullable=True),
        sa.Column('reply', sa.Text(), nullable=False),
        sa.Column('replied_by', sa.String(length=160), nullable=True),
        sa.Column('replied_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_by', sa.String(length=160), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['attendee_id'], ['attendees.id'], ),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('help_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_help_requests_node_id'), ['node_id'], unique=False)
        batch_op.create_index('ix_help_requests_state_created', ['state', 'created_at'], unique=False)

    op.create_table(
        'stuck_flags',
        sa.Column('node_id', sa.String(length=32), nullable=False),
        sa.Column('lab', sa.String(length=64), nullable=False),
        sa.Column('step', sa.String(length=64), nullable=False),
        sa.Column('reasons', sa.JSON(), nullable=False),
        sa.Column('hint', sa.Text(), nullable=False),
        sa.Column('since', sa.DateTime(), nullable=False),
        sa.Column('evaluated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
        sa.PrimaryKeyConstraint('node_id'),
    )

    with op.batch_alter_table('lab_progress', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fail_streak', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('checked_at', sa.String(length=40), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('lab_progress', schema=None) as batch_op:
        batch_op.drop_column('checked_at')
        batch_op.drop_column('fail_streak')
    op.drop_table('stuck_flags')
    with op.batch_alter_table('help_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_help_requests_state_created')
        batch_op.drop_index(batch_op.f('ix_help_requests_node_id'))
    op.drop_table('help_requests')
