"""An organization's own mail templates: listing, reading, storing, removing, previewing.

A template is checked before it is stored (sandbox.check: size, compilation, the allowed
language, the kind's variables, a render with its sample values); a refused one changes
nothing and answers 422 naming each part, rule and line. Storing and removing are audited
by kind, language and the parts changed, never their text. Unknown kinds and languages are
404s. The recipient and List-Unsubscribe of a mail are never a template's: the senders pass
them to the outbox.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.db.base import utcnow
from crm_service.errors import FieldProblem, NotFound, ValidationFailed
from crm_service.mail.kinds import MAIL_KINDS, MailKind
from crm_service.mail.models import MailTemplate
from crm_service.mail.repository import MailTemplateRepository
from crm_service.mail.sandbox import PARTS, TemplateRefused, TemplateSource, check
from crm_service.mail.schemas import (
    MailPreview,
    MailPreviewDraft,
    MailTemplateList,
    MailTemplateParts,
    MailTemplateRead,
    MailTemplateSet,
    MailTemplateSummary,
)
from crm_service.mail.templates import LANGUAGES, bundled_source, render
from crm_service.security.principal import Principal

TARGET_TYPE = "mail_template"


def _kind(kind: str, language: str) -> MailKind:
    found = MAIL_KINDS.get(kind)
    if found is None or language not in LANGUAGES:
        raise NotFound("No such mail template: see GET /v1/settings/mail-templates.")
    return found


def _source(row: MailTemplate) -> TemplateSource:
    return TemplateSource(subject=row.subject, text=row.text_body, html=row.html_body)


def _parts(source: TemplateSource) -> MailTemplateParts:
    return MailTemplateParts(subject=source.subject, text=source.text, html=source.html)


def _refusal(refused: TemplateRefused) -> ValidationFailed:
    problems = [
        FieldProblem(field=f"body.{problem.part}", rule=problem.rule, message=problem.message)
        for problem in refused.problems
    ]
    parts = ", ".join(sorted({problem.part for problem in refused.problems}))
    return ValidationFailed(f"The template cannot be used ({parts}).", errors=problems)


def _checked(kind: MailKind, payload: MailTemplateSet) -> TemplateSource:
    source = TemplateSource(subject=payload.subject, text=payload.text, html=payload.html)
    try:
        check(kind, source)
    except TemplateRefused as refused:
        raise _refusal(refused) from None
    return source


async def list_templates(*, session: AsyncSession, principal: Principal) -> MailTemplateList:
    """Every kind in every language, whether the organization has its own, and the bundled
    version to start from."""
    rows = await MailTemplateRepository(session, principal.organization_id).all()
    own = {(row.kind, row.language): row for row in rows}
    data = []
    for name, kind in sorted(MAIL_KINDS.items()):
        for language in LANGUAGES:
            row = own.get((name, language))
            data.append(
                MailTemplateSummary(
                    kind=name,
                    language=language,
                    overridden=row is not None,
                    updated_at=None if row is None else row.updated_at,
                    variables=sorted(kind.variables),
                    bundled=_parts(bundled_source(name, language)),
                )
            )
    return MailTemplateList(data=data)


async def get_template(
    *, session: AsyncSession, principal: Principal, kind: str, language: str
) -> MailTemplateRead:
    """The version in use: the organization's own, or else the bundled one."""
    found = _kind(kind, language)
    row = await MailTemplateRepository(session, principal.organization_id).one(kind, language)
    source = bundled_source(kind, language) if row is None else _source(row)
    return MailTemplateRead(
        kind=kind,
        language=language,
        source="bundled" if row is None else "organization",
        subject=source.subject,
        text=source.text,
        html=source.html,
        updated_at=None if row is None else row.updated_at,
        updated_by_id=None if row is None else row.updated_by_id,
        variables=sorted(found.variables),
    )


async def set_template(
    *,
    session: AsyncSession,
    principal: Principal,
    kind: str,
    language: str,
    payload: MailTemplateSet,
) -> MailTemplateRead:
    """Store the organization's own version once it passes the checks; audited with the
    parts that changed (the same text again changes and audits nothing)."""
    found = _kind(kind, language)
    source = _checked(found, payload)
    templates = MailTemplateRepository(session, principal.organization_id)
    row = await templates.one(kind, language)
    before = None if row is None else _source(row)
    changed = [part for part in PARTS if before is None or before.part(part) != source.part(part)]
    if changed:
        if row is None:
            row = MailTemplate(
                organization_id=principal.organization_id, kind=kind, language=language
            )
            session.add(row)
        row.subject, row.text_body, row.html_body = source.subject, source.text, source.html
        row.updated_at = utcnow()
        row.updated_by_id = principal.user_id
        await session.flush()
        audit(
            session,
            principal,
            AuditAction.MAIL_TEMPLATE_SET,
            target_type=TARGET_TYPE,
            target_id=f"{kind}.{language}",
            fields=changed,
        )
    return await get_template(session=session, principal=principal, kind=kind, language=language)


async def remove_template(
    *, session: AsyncSession, principal: Principal, kind: str, language: str
) -> None:
    """Back to the bundled version (404 when the organization has no own version). Audited."""
    _kind(kind, language)
    if not await MailTemplateRepository(session, principal.organization_id).remove(kind, language):
        raise NotFound("Your organization has no own version of this mail.")
    audit(
        session,
        principal,
        AuditAction.MAIL_TEMPLATE_REMOVED,
        target_type=TARGET_TYPE,
        target_id=f"{kind}.{language}",
        fields=PARTS,
    )


async def preview_template(
    *,
    session: AsyncSession,
    principal: Principal,
    kind: str,
    language: str,
    draft: MailPreviewDraft,
) -> MailPreview:
    """The mail rendered with the kind's sample values, from the version in use with the
    parts of `draft` in its place (checked as a stored template would be, and not stored).
    Nothing is sent."""
    found = _kind(kind, language)
    row = await MailTemplateRepository(session, principal.organization_id).one(kind, language)
    in_use = bundled_source(kind, language) if row is None else _source(row)
    parts = draft.model_dump(exclude_none=True)
    overrides = {} if row is None else {language: in_use}
    if parts:
        merged = MailTemplateSet.model_validate({**_parts(in_use).model_dump(), **parts})
        overrides = {language: _checked(found, merged)}
    rendered = render(kind, found.sample, language, overrides)
    return MailPreview(
        kind=kind,
        language=rendered.language,
        source="draft" if parts else rendered.source,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
