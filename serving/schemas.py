"""Request and response bodies of the API (validated at the edge; 422 names the field)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from recsys.data.schema import MAX_ID_LENGTH, MAX_TEXT_LENGTH, CatalogItem

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemOut(BaseModel):
    """One recommended item."""

    item_id: str
    score: float
    reasons: list[str]


class ListOut(BaseModel):
    """Every list the API returns."""

    recommendation_id: str = Field(description="Echo it in events to attribute conversions.")
    model_version: str
    items: list[ItemOut]
    fallback: str | None = Field(
        description="null for a personal list; otherwise what served instead (e.g. popular)."
    )
    experiment: str | None = Field(
        default=None, description="The A/B experiment this list was served under, or null."
    )
    variant: str | None = Field(
        default=None, description="The user's variant in it (or 'holdout'), or null."
    )


class EventsOut(BaseModel):
    """What a write did: events stored, skipped as already stored (their ``event_id``), and
    skipped because their customer or session was erased."""

    inserted: int
    duplicates: int
    erased: int


class BasketIn(_Strict):
    """A basket to complete."""

    item_ids: list[Id] = Field(min_length=1, max_length=200)
    user_id: Id | None = None
    k: int = Field(default=10, ge=1, le=100)


class MergeIn(_Strict):
    """Attach an anonymous session's events to this customer."""

    session_id: Id


class MergeOut(BaseModel):
    """How many events moved."""

    merged: int


class EraseOut(BaseModel):
    """How many events were erased."""

    erased_events: int


class ReloadIn(_Strict):
    """Which version to load (default: the registry's current one)."""

    version: str | None = Field(default=None, max_length=64)


class RegisterOut(BaseModel):
    """Whether an erasure's tombstone was lifted."""

    registered: bool


class ItemPatchIn(_Strict):
    """Fields of a catalogue item to change (those left out stay as they are)."""

    title: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    category: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    price: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    in_stock: bool | None = None
    margin: float | None = Field(default=None, ge=-1e9, le=1e9, allow_inf_nan=False)
    attributes: dict[str, str | int | float | bool | None] | None = Field(
        default=None, max_length=100
    )


class ItemIn(_Strict):
    """A catalogue item, created or replaced whole."""

    title: str = Field(default="", max_length=MAX_TEXT_LENGTH)
    category: str = Field(default="", max_length=MAX_TEXT_LENGTH)
    price: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    in_stock: bool = True
    margin: float | None = Field(default=None, ge=-1e9, le=1e9, allow_inf_nan=False)
    attributes: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=100
    )

    def to_item(self, item_id: str) -> CatalogItem:
        """The stored form."""
        return CatalogItem(item_id=item_id, **self.model_dump(exclude={"item_id"}))


class ItemWithIdIn(ItemIn):
    """An item of a batch upsert."""

    item_id: Id


class ItemBatchIn(_Strict):
    """``POST /v1/items``: many items at once."""

    items: list[ItemWithIdIn] = Field(min_length=1, max_length=1000)
