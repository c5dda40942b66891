"""SQL of the consent feature, always scoped by organization. The worker's few queries across
organizations live in `system_repository.py`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update

from crm_service.consent.models import (
    ConsentEvent,
    ConsentLink,
    ConsentPurpose,
    ConsentRequest,
    ConsentSigningKey,
    RequestStatus,
    Webform,
    WebformSubmission,
    WebformVersion,
)
from crm_service.db.repository import OrganizationRepository


class PurposeRepository(OrganizationRepository[ConsentPurpose]):
    model = ConsentPurpose

    async def versions(self, key: str) -> list[ConsentPurpose]:
        """Every version of the purpose, newest first."""
        result = await self.session.execute(
            self.scoped().where(ConsentPurpose.key == key).order_by(ConsentPurpose.version.desc())
        )
        return list(result.scalars())

    async def current(self, key: str) -> ConsentPurpose | None:
        versions = await self.versions(key)
        return versions[0] if versions else None

    async def current_all(self) -> list[ConsentPurpose]:
        result = await self.session.execute(
            self.scoped().where(ConsentPurpose.superseded_at.is_(None)).order_by(ConsentPurpose.key)
        )
        return list(result.scalars())

    async def current_of(self, keys: Iterable[str]) -> dict[str, ConsentPurpose]:
        wanted = set(keys)
        if not wanted:
            return {}
        result = await self.session.execute(
            self.scoped().where(
                ConsentPurpose.key.in_(wanted), ConsentPurpose.superseded_at.is_(None)
            )
        )
        return {purpose.key: purpose for purpose in result.scalars()}

    async def by_ids(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ConsentPurpose]:
        wanted = set(ids)
        if not wanted:
            return {}
        result = await self.session.execute(self.scoped().where(ConsentPurpose.id.in_(wanted)))
        return {purpose.id: purpose for purpose in result.scalars()}


class ConsentEventRepository(OrganizationRepository[ConsentEvent]):
    """Appends and reads; there is deliberately no update or delete here."""

    model = ConsentEvent

    async def of_subject(self, subject_id: uuid.UUID) -> list[ConsentEvent]:
        """The subject's events, oldest first."""
        result = await self.session.execute(
            self.scoped()
            .where(ConsentEvent.subject_id == subject_id)
            .order_by(ConsentEvent.recorded_at, ConsentEvent.id)
        )
        return list(result.scalars())

    async def delete(self, instance: ConsentEvent) -> None:
        raise TypeError("consent events are append-only")


class SigningKeyRepository(OrganizationRepository[ConsentSigningKey]):
    model = ConsentSigningKey

    async def current(self) -> ConsentSigningKey | None:
        result = await self.session.execute(self.scoped())
        return result.scalar_one_or_none()


class ConsentRequestRepository(OrganizationRepository[ConsentRequest]):
    model = ConsentRequest

    async def page(
        self,
        *,
        status: str | None,
        record_id: uuid.UUID | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[ConsentRequest]:
        statement = self.scoped()
        if status is not None:
            statement = statement.where(ConsentRequest.status == status)
        if record_id is not None:
            statement = statement.where(ConsentRequest.record_id == record_id)
        if after is not None:
            created, id_ = after
            statement = statement.where(
                (ConsentRequest.created_at < created)
                | ((ConsentRequest.created_at == created) & (ConsentRequest.id < id_))
            )
        statement = statement.order_by(
            ConsentRequest.created_at.desc(), ConsentRequest.id.desc()
        ).limit(limit + 1)
        return list((await self.session.execute(statement)).scalars())

    async def open_of_subject(self, subject_id: uuid.UUID) -> list[ConsentRequest]:
        """The subject's requests still waiting for an answer (pending or past the deadline)."""
        result = await self.session.execute(
            self.scoped().where(
                ConsentRequest.subject_id == subject_id,
                ConsentRequest.status.in_(
                    [RequestStatus.PENDING.value, RequestStatus.NO_RESPONSE.value]
                ),
            )
        )
        return list(result.scalars())

    async def add_link(self, link: ConsentLink) -> None:
        self.session.add(link)
        await self.session.flush()


class WebformRepository(OrganizationRepository[Webform]):
    model = Webform

    async def all(self) -> list[Webform]:
        result = await self.session.execute(self.scoped().order_by(Webform.created_at, Webform.id))
        return list(result.scalars())

    async def version(self, form_id: uuid.UUID, version: int) -> WebformVersion | None:
        result = await self.session.execute(
            select(WebformVersion).where(
                WebformVersion.organization_id == self.organization_id,
                WebformVersion.form_id == form_id,
                WebformVersion.version == version,
            )
        )
        return result.scalar_one_or_none()

    async def add_version(self, version: WebformVersion) -> None:
        self.session.add(version)
        await self.session.flush()


class SubmissionRepository(OrganizationRepository[WebformSubmission]):
    model = WebformSubmission

    async def confirmed_for(
        self, form_id: uuid.UUID, email_bidx: str, *, besides: uuid.UUID
    ) -> WebformSubmission | None:
        """The latest confirmed submission of this address to this form, other than `besides`,
        that made or found a record."""
        result = await self.session.execute(
            self.scoped()
            .where(
                WebformSubmission.form_id == form_id,
                WebformSubmission.email_bidx == email_bidx,
                WebformSubmission.confirmed_at.is_not(None),
                WebformSubmission.record_id.is_not(None),
                WebformSubmission.id != besides,
            )
            .order_by(WebformSubmission.confirmed_at.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def mark_confirmed(self, submission: WebformSubmission, *, at: datetime) -> bool:
        """Confirm once: only the first of two concurrent confirmations changes the row."""
        result = await self.session.execute(
            update(WebformSubmission)
            .where(
                WebformSubmission.id == submission.id,
                WebformSubmission.organization_id == self.organization_id,
                WebformSubmission.confirmed_at.is_(None),
            )
            .values(confirmed_at=at, status="confirmed", data_sealed=None)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
