"""HTTP for an organization's own mail templates: /v1/settings/mail-templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Depends, Path, Response, status

from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.kit.schemas import SINGLE_LINE_PATTERN
from crm_service.mail import template_settings as service
from crm_service.mail.schemas import (
    MailPreview,
    MailPreviewDraft,
    MailTemplateList,
    MailTemplateRead,
    MailTemplateSet,
)
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(prefix="/v1/settings/mail-templates", tags=["settings"])
PrivacyAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_PRIVACY))]
ONE = "/{kind}/{language}"
# Any name within these bounds is looked up (an unknown one is a 404); kinds.py has the kinds.
Kind = Annotated[
    str, Path(max_length=64, pattern=SINGLE_LINE_PATTERN, description="e.g. consent_request")
]
Language = Annotated[str, Path(max_length=8, pattern=SINGLE_LINE_PATTERN, description="en or ja")]


@router.get(
    "",
    operation_id="listMailTemplates",
    summary="Every kind of mail in every language, and whether the organization has its own",
    response_model=MailTemplateList,
    responses=problem_responses(401, 403),
)
async def list_mail_templates(principal: PrivacyAdmin, session: DbSession) -> MailTemplateList:
    """With each, the variables its parts may use and the bundled version to start from.
    Needs the right `manage_privacy`."""
    return await service.list_templates(session=session, principal=principal)


@router.get(
    ONE,
    operation_id="getMailTemplate",
    summary="The version of a mail in use: the organization's own or the bundled one",
    response_model=MailTemplateRead,
    responses=problem_responses(401, 403, 404),
)
async def get_mail_template(
    kind: Kind, language: Language, principal: PrivacyAdmin, session: DbSession
) -> MailTemplateRead:
    """`source` says which. Needs the right `manage_privacy`."""
    return await service.get_template(
        session=session, principal=principal, kind=kind, language=language
    )


@router.put(
    ONE,
    operation_id="setMailTemplate",
    summary="Store the organization's own version of a mail",
    response_model=MailTemplateRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def set_mail_template(
    kind: Kind,
    language: Language,
    payload: MailTemplateSet,
    principal: PrivacyAdmin,
    session: DbSession,
) -> MailTemplateRead:
    """jinja2 source for the subject line, text and HTML bodies, using only the mail's
    variables, loops over its lists, conditions and a few filters (no calls, arithmetic,
    `set`, includes or imports); rendered in a sandbox, values HTML-escaped in the html part.
    Checked with sample values before it is stored: a part that does not compile, uses
    anything else or is over 64 KiB answers 422 naming the part and line, and nothing is
    stored. The recipient and unsubscribe link stay the service's. Needs the right
    `manage_privacy`. Audited (kind, language and parts, never the text)."""
    return await service.set_template(
        session=session, principal=principal, kind=kind, language=language, payload=payload
    )


@router.delete(
    ONE,
    operation_id="deleteMailTemplate",
    summary="Remove the organization's own version: the bundled one is used again",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
async def delete_mail_template(
    kind: Kind, language: Language, principal: PrivacyAdmin, session: DbSession
) -> Response:
    """404 when the organization has no own version. Needs the right `manage_privacy`.
    Audited."""
    await service.remove_template(
        session=session, principal=principal, kind=kind, language=language
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    f"{ONE}/preview",
    operation_id="previewMailTemplate",
    summary="Render a mail with sample values, without sending it",
    response_model=MailPreview,
    responses=problem_responses(401, 403, 404, 422),
)
async def preview_mail_template(
    kind: Kind,
    language: Language,
    principal: PrivacyAdmin,
    session: DbSession,
    draft: Annotated[MailPreviewDraft, Body()] = MailPreviewDraft(),  # noqa: B008 - immutable
) -> MailPreview:
    """The version in use, or with the parts sent in its place (checked like a stored
    template, and not stored): `source` is then `draft`. Needs the right `manage_privacy`."""
    return await service.preview_template(
        session=session, principal=principal, kind=kind, language=language, draft=draft
    )
