"""Mail templates: jinja2 files under `mail/templates/<language>/`.

A template named `NAME` is three files: `NAME.subject.j2` (one line), `NAME.txt.j2` and
`NAME.html.j2` (HTML-escaped). English is the fallback for a language, or a template, that is
not there. Adding a template is adding its files; per-organization overrides are not built
yet (they would be looked up before these).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
LANGUAGES = ("en", "ja")
FALLBACK_LANGUAGE = "en"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UnknownTemplate(LookupError):
    """No such mail template (a programming error, not a user's)."""


@dataclass(frozen=True)
class RenderedMail:
    language: str
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIRECTORY),
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def _language_for(template: str, language: str) -> str:
    if language in LANGUAGES and (TEMPLATE_DIRECTORY / language / f"{template}.txt.j2").exists():
        return language
    return FALLBACK_LANGUAGE


def render(template: str, context: Mapping[str, object], language: str = "en") -> RenderedMail:
    """The subject line and both bodies of `template` in `language` (or English)."""
    if not _NAME.match(template):
        raise UnknownTemplate(f"{template!r} is not a template name")
    chosen = _language_for(template, language)
    environment = _environment()
    parts = {}
    for part in ("subject", "txt", "html"):
        try:
            source = environment.get_template(f"{chosen}/{template}.{part}.j2")
        except TemplateNotFound:
            raise UnknownTemplate(f"mail template {template!r} has no {part} part") from None
        parts[part] = source.render(**context)
    # One line, whatever the context held: a header never carries a line break.
    subject = " ".join(parts["subject"].split())
    return RenderedMail(language=chosen, subject=subject, text=parts["txt"], html=parts["html"])
