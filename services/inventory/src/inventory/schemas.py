"""Wire formats. A database row is never sent as is: routes answer in MoviePublic's shape."""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr, StringConstraints

TITLE_MAX = 255
DESCRIPTION_MAX = 10_000


def no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# A JSON string only (no number or null coerced), trimmed, then 1-255 characters.
Title = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX),
    AfterValidator(no_nul),
]
# A JSON string only, kept as sent (may be empty), at most 10 000 characters.
Description = Annotated[
    StrictStr, StringConstraints(max_length=DESCRIPTION_MAX), AfterValidator(no_nul)
]


class _MovieIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown fields are ignored

    title: Title
    description: Description


class MovieCreate(_MovieIn):
    """Body of POST /api/movies."""


class MovieUpdate(_MovieIn):
    """Body of PUT /api/movies/{id}: a full replacement, validated like MovieCreate."""


class MoviePublic(BaseModel):
    id: int
    title: str
    description: str


class ErrorBody(BaseModel):
    error: str
    details: list[dict[str, Any]] | None = None
