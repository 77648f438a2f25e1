"""Create the orders table.

Revision ID: 0001
Revises:
Create Date: 2024-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("number_of_items", sa.Integer(), nullable=False),
        sa.Column("total_amount", sa.Numeric(12, 2), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("order_id", name=op.f("uq_orders_order_id")),
        sa.CheckConstraint("user_id > 0", name=op.f("ck_orders_user_id_positive")),
        sa.CheckConstraint("number_of_items > 0", name=op.f("ck_orders_number_of_items_positive")),
        sa.CheckConstraint("total_amount >= 0", name=op.f("ck_orders_total_amount_not_negative")),
    )


def downgrade() -> None:
    op.drop_table("orders")
