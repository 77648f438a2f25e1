"""Settings: real secrets in production (the rule of crud_common.settings.ServiceSettings)."""

import pytest
from pydantic import ValidationError

from inventory.config import Settings


@pytest.mark.parametrize("password", ["generate-me", ""])
def test_production_refuses_the_placeholder_or_an_empty_password(password: str) -> None:
    with pytest.raises(ValidationError, match=r"(?i)inventory_db_password"):
        Settings(_env_file=None, app_env="production", inventory_db_password=password)


def test_development_accepts_the_placeholder_and_keeps_it_masked() -> None:
    settings = Settings(_env_file=None, app_env="development", inventory_db_password="generate-me")
    assert "generate-me" not in repr(settings)


def test_more_connections_at_start_up_than_at_most_is_refused() -> None:
    with pytest.raises(ValidationError, match="INVENTORY_DB_POOL_MIN_SIZE exceeds"):
        Settings(_env_file=None, inventory_db_password="s", inventory_db_pool_min_size=11)
