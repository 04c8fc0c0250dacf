"""paced heartbeats: the interval the controller last told each node to beat at (over its heartbeat budget)

Additive only: one nullable column (None = the node's own interval).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 07:50:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paced_interval', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('paced_interval')
