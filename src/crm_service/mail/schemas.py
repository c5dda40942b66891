"""Bodies of /v1/settings/mail-templates: an organization's own mail templates."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from crm_service.kit.schemas import MULTI_LINE_PATTERN, InputModel, text
from crm_service.mail.sandbox import MAX_OUTPUT_CHARS, MAX_PART_BYTES

# A part as written: jinja2 source, kept as given (no trimming: whitespace is the mail's).
# Control characters other than tab and line breaks are refused like in any text; the byte
# cap (UTF-8) is the service's, this is the character cap that goes with it.
TemplatePart = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PART_BYTES, pattern=MULTI_LINE_PATTERN),
]
PartText = text(MAX_PART_BYTES)
RenderedText = text(MAX_OUTPUT_CHARS)


class MailTemplateParts(BaseModel):
    """The three parts of one mail as jinja2 source."""

    subject: PartText = Field(description="The subject line; line breaks become spaces.")
    text: PartText = Field(description="The plain-text body.")
    html: PartText = Field(description="The HTML body; values placed in it are escaped.")


class MailTemplateSet(InputModel):
    """An organization's own version of a mail: jinja2 source for each part, using only the
    kind's variables (see `variables` of the template), checked before it is stored."""

    subject: TemplatePart
    text: TemplatePart
    html: TemplatePart


class MailPreviewDraft(InputModel):
    """Parts to preview instead of the version in use (checked like a stored template, and
    not stored); a part left out is the version in use's. No body previews that version."""

    subject: TemplatePart | None = None
    text: TemplatePart | None = None
    html: TemplatePart | None = None


class MailTemplateSummary(BaseModel):
    kind: text(64)
    language: text(8)
    overridden: bool = Field(description="True when the organization has its own version.")
    updated_at: datetime | None
    variables: list[text(64)] = Field(max_length=50, description="What its parts may use.")
    bundled: MailTemplateParts = Field(description="The bundled version, to start from.")


class MailTemplateList(BaseModel):
    data: list[MailTemplateSummary] = Field(max_length=100)


class MailTemplateRead(MailTemplateParts):
    """The version of a mail in use: the organization's own, or the bundled one."""

    kind: text(64)
    language: text(8)
    source: Literal["organization", "bundled"]
    updated_at: datetime | None = Field(description="When the organization's own was stored.")
    updated_by_id: uuid.UUID | None
    variables: list[text(64)] = Field(max_length=50, description="What its parts may use.")


class MailPreview(BaseModel):
    """A mail as it would be sent, rendered with sample values; nothing is sent."""

    kind: text(64)
    language: text(8)
    source: Literal["organization", "bundled", "draft"]
    subject: RenderedText
    text: RenderedText
    html: RenderedText
