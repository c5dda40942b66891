"""ORM glue for classifiable fields: a plaintext attribute in memory, its stored form in a
column, and a guard that refuses to flush plaintext that was never sealed.

`SealedField("email")` on a model reads and writes `record.email` as text while the column
attribute `email_stored` holds the stored form (see codec.py). Loaded records hold no
plaintext until the storage layer reveals them; reading before that is a programming error.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from crm_service.crypto.codec import DataKey


class NotRevealed(RuntimeError):
    """A sealed attribute was read before the storage layer opened the record."""


class SealedField:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stored = f"{name}_stored"

    def __set_name__(self, owner: type, name: str) -> None:
        assert name == self.name, f"SealedField({self.name!r}) assigned to {name!r}"

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        plaintext = instance.__dict__.get("_plaintext")
        if plaintext is None:
            raise NotRevealed(f"{owner.__name__}.{self.name} read before the record was revealed")
        return plaintext.get(self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        plaintext = instance.__dict__.setdefault("_plaintext", {})
        if value is not None and not isinstance(value, str):
            value = value.isoformat() if hasattr(value, "isoformat") else str(value)
        plaintext[self.name] = value
        instance.__dict__.setdefault("_pending", set()).add(self.name)


class SealedRecord:
    """Mixin for models with SealedField attributes."""

    __sealed_fields__: tuple[str, ...] = ()
    __indexed_fields__: dict[str, Any] = {}

    @property
    def erased(self) -> bool:
        """True when the record's data key was destroyed: its sealed values are gone."""
        return bool(self.__dict__.get("_erased", False))

    @property
    def pending_fields(self) -> set[str]:
        return set(self.__dict__.get("_pending", ()))

    def mark_all_pending(self) -> None:
        self.__dict__.setdefault("_pending", set()).update(self.__sealed_fields__)

    def set_revealed(
        self, values: dict[str, str | None], *, erased: bool = False, key: DataKey | None = None
    ) -> None:
        self.__dict__["_plaintext"] = values
        self.__dict__["_pending"] = set()
        self.__dict__["_erased"] = erased
        self.__dict__["_key"] = key

    @property
    def sealing_key(self) -> DataKey | None:
        """The key the record's values were opened with (None for new or erased records)."""
        return self.__dict__.get("_key")

    def mark_new_subject(self) -> None:
        """This record introduces a data subject: its first key is created, not looked up."""
        self.__dict__["_new_subject"] = True

    @property
    def is_new_subject(self) -> bool:
        return bool(self.__dict__.get("_new_subject", False))


@event.listens_for(Session, "before_flush")
def _refuse_unsealed_plaintext(session: Session, _context: Any, _instances: Any) -> None:
    for instance in (*session.new, *session.dirty):
        if isinstance(instance, SealedRecord) and instance.pending_fields:
            raise RuntimeError(
                f"{type(instance).__name__} has unsealed changes; save it through its repository"
            )
