"""SSH rescue runs (rescue_runs) and one row per rescued node (rescue_hosts)

Additive only: two new tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 16:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rescue_runs',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('trigger', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=160), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('rescue_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rescue_runs_state'), ['state'], unique=False)
    op.create_table(
        'rescue_hosts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(length=32), nullable=False),
        sa.Column('node_id', sa.String(length=32), nullable=False),
        sa.Column('node_name', sa.String(length=64), nullable=False),
        sa.Column('address', sa.String(length=255), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('current_step', sa.String(length=32), nullable=False),
        sa.Column('steps', sa.JSON(), nullable=False),
        sa.Column('diagnostics', sa.JSON(), nullable=False),
        sa.Column('transcript', sa.Text(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
        sa.ForeignKeyConstraint(['run_id'], ['rescue_runs.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id', 'node_id'),
    )
    with op.batch_alter_table('rescue_hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rescue_hosts_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_rescue_hosts_node_id'), ['node_id'], unique=False)


def downgrade() -> None:
    op.drop_table('rescue_hosts')
    op.drop_table('rescue_runs')
