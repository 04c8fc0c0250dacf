"""enrollment tokens bound to an inventory host; the host a node was provisioned as

Additive only: three nullable columns and two indexes, so a room's database
upgrades in place. Tokens and nodes from before have no binding (NULL): such a
node is never matched to an inventory host by a credentials sheet or a teardown.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 18:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('enrollment_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bound_host', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('provision_run_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_enrollment_tokens_provision_run_id'), ['provision_run_id'],
                              unique=False)

    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provision_host', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_nodes_provision_host'), ['provision_host'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_provision_host'))
        batch_op.drop_column('provision_host')

    with op.batch_alter_table('enrollment_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollment_tokens_provision_run_id'))
        batch_op.drop_column('provision_run_id')
        batch_op.drop_column('bound_host')
