"""messages: what an instructor sent to an attendee's terminal (labfleet message)

Additive only: one new table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:20:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'messages',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('node_id', sa.String(length=32), nullable=False),
        sa.Column('attendee_id', sa.String(length=32), nullable=True),
        sa.Column('batch_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('lab', sa.String(length=64), nullable=False),
        sa.Column('step', sa.String(length=64), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('sent_by', sa.String(length=160), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['attendee_id'], ['attendees.id'], ),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_node_created', ['node_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_batch_id'), ['batch_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_batch_id'))
        batch_op.drop_index('ix_messages_node_created')
    op.drop_table('messages')
