"""Alembic environment: the billing database, as billing's settings name it."""

from crud_common.migrations import metadata, run

from billing.config import get_settings

run(get_settings().database, metadata())
