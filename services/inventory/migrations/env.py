"""Alembic environment: the inventory database, as inventory's settings name it."""

from crud_common.migrations import metadata, run
from sqlalchemy import BigInteger, Column, Identity, Index, String, Table, Text

from inventory.config import get_settings

target_metadata = metadata()

# The schema the migrations build, for `alembic check` / `revision --autogenerate` only: the
# service itself queries with plain SQL (inventory.repository), not through these objects.
Table(
    "movies",
    target_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("title", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Index(
        "ix_movies_title_trgm",
        "title",
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    ),
)

run(get_settings().database, target_metadata)
