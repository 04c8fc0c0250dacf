"""instructors log in to the web pages with a password

Additive only: two nullable columns. Instructors from before have no password
(no page login) until `labfleet instructor passwd NAME` gives them one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 13:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import controller.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instructors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', controller.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('instructors', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('password_hash')
