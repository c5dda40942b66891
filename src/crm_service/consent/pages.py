"""The public pages (jinja2): a web form, its double opt-in confirmation, the consent page.

Minimal, accessible HTML that works without JavaScript: every action is a plain form POST
whose proof is the token in its own URL (no cookies, so nothing for a cross-site request to
ride on). Each page is sent with a strict Content-Security-Policy: no script, style, frame or
plugin may load, and forms may post only to this service.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from crm_service.kit.modules import Module
from crm_service.records.fields import CATALOG

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "required": "required",
        "purposes_legend": "What you agree to (optional; tick each one you want)",
        "notice": "privacy notice",
        "leave_empty": "Leave this field empty",
        "submit": "Send",
        "thanks_title": "Thank you",
        "thanks_body": "We have received your details. If we need you to confirm your email "
        "address, we have sent you a message with a link.",
        "continue": "Continue",
        "confirm_title_pending": "Confirm your email address",
        "confirm_body": "Please confirm that you sent this form. Nothing is recorded until you "
        "press the button.",
        "confirm_button": "Confirm",
        "confirm_title_confirmed": "Confirmed",
        "confirmed_body": "Thank you: your email address is confirmed.",
        "confirm_title_expired": "This link has expired",
        "expired_body": "This confirmation link has expired and what you sent has been deleted.",
        "resend_heading": "Send the form again to get a new link",
        "confirm_title_unknown": "This link is not valid",
        "unknown_body": "This link is not valid. It may have been copied incompletely.",
        "consent_title_pending": "Your consent",
        "consent_body": "Please tell us, for each purpose, whether you agree. You can change "
        "your mind at any time. Please answer by",
        "grant": "I agree",
        "refuse": "I do not agree",
        "consent_button": "Send my answer",
        "consent_title_answered": "Thank you",
        "consent_answered_body": "Your answer has been recorded.",
        "consent_title_unknown": "This link no longer works",
        "consent_unknown_body": "This link has been used, has expired or is not valid.",
    },
    "ja": {
        "required": "必須",
        "purposes_legend": "同意する項目（任意・希望する項目にチェック）",
        "notice": "プライバシー通知",
        "leave_empty": "この欄は空のままにしてください",
        "submit": "送信",
        "thanks_title": "ありがとうございます",
        "thanks_body": "内容を受け付けました。メールアドレスの確認が必要な場合は、リンク付きのメールをお送りしました。",  # noqa: E501 - Japanese: two columns a character
        "continue": "続ける",
        "confirm_title_pending": "メールアドレスの確認",
        "confirm_body": "このフォームを送信したのがご本人であることを確認してください。ボタンを押すまで何も記録されません。",  # noqa: E501 - Japanese: two columns a character
        "confirm_button": "確認する",
        "confirm_title_confirmed": "確認しました",
        "confirmed_body": "ありがとうございます。メールアドレスを確認しました。",
        "confirm_title_expired": "このリンクは有効期限切れです",
        "expired_body": "この確認リンクは有効期限が切れ、送信内容は削除されました。",
        "resend_heading": "新しいリンクを受け取るにはもう一度送信してください",
        "confirm_title_unknown": "このリンクは無効です",
        "unknown_body": "このリンクは無効です。一部しかコピーされていない可能性があります。",
        "consent_title_pending": "同意のお願い",
        "consent_body": "目的ごとに同意されるかどうかをお知らせください。いつでも変更できます。回答期限:",  # noqa: E501 - Japanese: two columns a character
        "grant": "同意する",
        "refuse": "同意しない",
        "consent_button": "回答を送信",
        "consent_title_answered": "ありがとうございます",
        "consent_answered_body": "ご回答を記録しました。",
        "consent_title_unknown": "このリンクは使用できません",
        "consent_unknown_body": "このリンクは使用済み、期限切れ、または無効です。",
    },
}

LABELS_JA = {
    "first_name": "名",
    "last_name": "姓",
    "email": "メールアドレス",
    "phone": "電話番号",
    "mobile": "携帯電話",
    "company": "会社名",
    "title": "役職",
    "date_of_birth": "生年月日",
    "mailing_street": "住所（番地）",
    "mailing_city": "市区町村",
    "mailing_state": "都道府県・州",
    "mailing_postal_code": "郵便番号",
    "mailing_country": "国",
    "description": "備考",
    "national_id": "国民識別番号",
    "source_ip": "送信元IPアドレス（ウェブフォーム）",
    "website": "ウェブサイト",
    "industry": "業種",
    "department": "部署",
}


TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=4)
def _environment(*directories: Path) -> Environment:
    """The pages' templates: those of `directories` first (the privacy portal's), then these
    (the shared `base.html` among them)."""
    return Environment(
        loader=FileSystemLoader([*directories, TEMPLATES]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        auto_reload=False,
    )


def labels(module: Module, language: str) -> dict[str, str]:
    shown = {spec.name: spec.label for spec in CATALOG[module]}
    shown.update(department="Department")
    if language == "ja":
        shown.update(LABELS_JA)
    return shown


def render(
    template: str,
    *,
    language: str,
    organization_name: str,
    status_code: int = 200,
    templates: tuple[Path, ...] = (),
    texts: Mapping[str, Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A public page under the strict policy. Another feature's pages (the privacy portal)
    pass their own template directory and texts, which extend these."""
    lang = language if language in TEXT else "en"
    shown = {**TEXT[lang], **(texts or {}).get(lang, {})}
    html = (
        _environment(*templates)
        .get_template(template)
        .render(lang=lang, t=shown, organization_name=organization_name, **context)
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={**(headers or {}), "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )
