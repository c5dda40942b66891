"""Mail templates: the bundled jinja2 files under `mail/templates/<language>/`, and an
organization's own versions of them (mail_templates, rendered in the sandbox of sandbox.py).

A template named `NAME` is three files: `NAME.subject.j2` (one line), `NAME.txt.j2` and
`NAME.html.j2` (HTML-escaped). Adding a template is adding its files, and its variables to
kinds.py.

Which version is used, for a mail asked for in language L: the organization's own in L, the
bundled one in L, the organization's own in English, the bundled English one. The recipient's
language comes before the organization's wording: a Japanese reader gets the bundled Japanese
mail rather than the organization's English one. An organization's template that fails with
the values of one mail (it was checked with sample values when stored, but real values can
differ, e.g. an empty list) is skipped for the next in that order, and the log says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from crm_service.mail.kinds import MAIL_KINDS
from crm_service.mail.sandbox import TemplateRefused, TemplateSource, render_override

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
LANGUAGES = ("en", "ja")
FALLBACK_LANGUAGE = "en"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# The file of each part of a template.
_FILE_PARTS = {"subject": "subject", "text": "txt", "html": "html"}

logger = structlog.get_logger("crm_service.mail")

Source = Literal["organization", "bundled"]


class UnknownTemplate(LookupError):
    """No such mail template (a programming error, not a user's)."""


@dataclass(frozen=True)
class RenderedMail:
    language: str
    subject: str
    text: str
    html: str
    source: Source = "bundled"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIRECTORY),
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def _bundled_exists(template: str, language: str) -> bool:
    return (TEMPLATE_DIRECTORY / language / f"{template}.txt.j2").exists()


def candidate_languages(language: str) -> list[str]:
    """The languages tried, in order, for a mail asked for in `language`."""
    if language in LANGUAGES and language != FALLBACK_LANGUAGE:
        return [language, FALLBACK_LANGUAGE]
    return [FALLBACK_LANGUAGE]


def bundled_source(template: str, language: str) -> TemplateSource:
    """The bundled files of `template` in `language`, as an administrator starts from them."""
    if not _NAME.match(template) or not _bundled_exists(template, language):
        raise UnknownTemplate(f"{template!r} has no bundled {language!r} version")
    folder = TEMPLATE_DIRECTORY / language
    return TemplateSource(
        **{
            part: (folder / f"{template}.{suffix}.j2").read_text(encoding="utf-8")
            for part, suffix in _FILE_PARTS.items()
        }
    )


def _render_bundled(template: str, language: str, context: Mapping[str, object]) -> RenderedMail:
    environment = _environment()
    parts = {}
    for part, suffix in _FILE_PARTS.items():
        try:
            source = environment.get_template(f"{language}/{template}.{suffix}.j2")
        except TemplateNotFound:
            raise UnknownTemplate(f"mail template {template!r} has no {part} part") from None
        parts[part] = source.render(**context)
    # One line, whatever the context held: a header never carries a line break.
    subject = " ".join(parts["subject"].split())
    return RenderedMail(language=language, subject=subject, text=parts["text"], html=parts["html"])


def render(
    template: str,
    context: Mapping[str, object],
    language: str = "en",
    overrides: Mapping[str, TemplateSource] | None = None,
) -> RenderedMail:
    """The subject line and both bodies of `template` for a reader of `language`, from the
    first of: `overrides` (the organization's own, by language) in that language, the bundled
    files in it, then the same in English."""
    if not _NAME.match(template):
        raise UnknownTemplate(f"{template!r} is not a template name")
    overrides = overrides or {}
    kind = MAIL_KINDS.get(template)
    for candidate in candidate_languages(language):
        override = overrides.get(candidate)
        if override is not None and kind is not None:
            try:
                subject, text, html = render_override(kind, override, context)
            except TemplateRefused as refused:
                # Never the values: they may be personal data. Which part and why is enough.
                logger.warning(
                    "mail_template_skipped",
                    template=template,
                    language=candidate,
                    parts=[problem.part for problem in refused.problems],
                    rules=[problem.rule for problem in refused.problems],
                )
            else:
                return RenderedMail(candidate, subject, text, html, source="organization")
        if _bundled_exists(template, candidate):
            return _render_bundled(template, candidate, context)
    raise UnknownTemplate(f"mail template {template!r} has no files")
