"""SQL for organizations' own mail templates."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete

from crm_service.db.repository import OrganizationRepository
from crm_service.mail.models import MailTemplate


class MailTemplateRepository(OrganizationRepository[MailTemplate]):
    model = MailTemplate

    async def all(self) -> list[MailTemplate]:
        result = await self.session.execute(self.scoped())
        return list(result.scalars())

    async def of_kind(self, kind: str, languages: Sequence[str]) -> list[MailTemplate]:
        result = await self.session.execute(
            self.scoped().where(MailTemplate.kind == kind, MailTemplate.language.in_(languages))
        )
        return list(result.scalars())

    async def one(self, kind: str, language: str) -> MailTemplate | None:
        result = await self.session.execute(
            self.scoped().where(MailTemplate.kind == kind, MailTemplate.language == language)
        )
        return result.scalar_one_or_none()

    async def remove(self, kind: str, language: str) -> bool:
        result = await self.session.execute(
            delete(MailTemplate)
            .where(
                MailTemplate.organization_id == self.organization_id,
                MailTemplate.kind == kind,
                MailTemplate.language == language,
            )
            .returning(MailTemplate.id)
        )
        return result.scalar_one_or_none() is not None
