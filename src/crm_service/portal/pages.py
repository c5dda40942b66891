"""The portal's pages: rendered by the consent pages' renderer (the same base template, the
same strict Content-Security-Policy, no script), with the portal's templates and texts in
English and Japanese.

The language is the `?lang=` the visitor chose (remembered in a cookie), else the best of
their browser's `Accept-Language`, else English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse

from crm_service.consent.pages import render as render_page

TEMPLATES = (Path(__file__).parent / "templates",)
LANGUAGES = ("en", "ja")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "portal_title": "Your privacy",
        "language_switch": "日本語",
        "sign_in_intro": "Here you can see the personal data we hold about you, download it, "
        "ask us to correct it, decide what you consent to, and make requests about your data. "
        "Enter your email address and we will send you a code to sign in with.",
        "email_label": "Email address",
        "send_code": "Send me a code",
        "email_invalid": "Please enter a valid email address.",
        "signed_out": "You have signed out.",
        "session_ended": "Your session has ended. Please sign in again.",
        "code_title": "Enter your code",
        "code_sent": "If we hold data for this address, we have sent it a message with a "
        "six-digit code. The code works once, for 10 minutes.",
        "code_label": "Code",
        "sign_in": "Sign in",
        "code_wrong": "That code is not right, or it has expired or been used. Check it, or "
        "ask for a new one.",
        "start_again": "Ask for a new code",
        "sign_out": "Sign out",
        "signed_in_as": "Signed in as",
        "refused_title": "This form has expired",
        "refused_body": "For your protection this form could not be accepted. Please go back "
        "to your page and try again.",
        "back": "Back to your page",
        "data_title": "Your data",
        "no_records": "We hold no records for this address.",
        "lead": "Lead",
        "contact": "Contact",
        "record_heading": "Record",
        "field": "Field",
        "value": "Value",
        "created_at": "Created",
        "updated_at": "Last changed",
        "source": "Where it came from",
        "legal_basis": "Legal basis",
        "empty": "—",
        "consent_heading": "Your consent",
        "consent_intro": "You can give or withdraw your consent for each purpose at any time.",
        "no_purposes": "There are no purposes to consent to.",
        "status_granted": "You have given consent",
        "status_withdrawn": "You have withdrawn consent",
        "status_refused": "You have refused",
        "status_none": "You have not been asked",
        "grant_button": "Give consent",
        "withdraw_button": "Withdraw consent",
        "consent_saved": "Your choice has been recorded.",
        "requests_heading": "Questions we have asked you",
        "request_deadline": "Please answer by",
        "answer_saved": "Your answer has been recorded.",
        "answer_gone": "This question can no longer be answered.",
        "actions": "What you can do",
        "download_json": "Download my data (JSON)",
        "download_csv": "Download my data (CSV files in a zip)",
        "requests_link": "Ask for a correction, make a request, follow your requests",
        "requests_title": "Your requests",
        "filed_heading": "Requests you have made",
        "no_requests": "You have made no requests.",
        "request_type": "Request",
        "request_status": "Status",
        "request_received": "Received",
        "request_due": "We answer by",
        "new_request_heading": "Make a request",
        "details_label": "Anything you want to tell us (optional)",
        "file_button": "Send the request",
        "request_filed": "Your request has been received. We answer within a month.",
        "correction_heading": "Ask for a correction",
        "correction_intro": "Change what is wrong below and send it: we check and correct it.",
        "correction_details_label": "Anything else to correct (optional)",
        "correction_button": "Ask for these corrections",
        "type_access": "Access",
        "type_portability": "Portability",
        "type_rectification": "Correction",
        "type_restriction": "Restriction",
        "type_erasure": "Erasure",
        "type_objection": "Objection",
        "explain_access": "a copy of all the data we hold about you",
        "explain_portability": "your data in a machine-readable form, to take elsewhere",
        "explain_restriction": "we keep your data but stop using it",
        "explain_erasure": "we delete your data",
        "explain_objection": "you object to how we use your data",
        "state_awaiting_verification": "Waiting for us to confirm who you are",
        "state_in_progress": "In progress",
        "state_completed": "Done",
        "state_rejected": "Refused",
    },
    "ja": {
        "portal_title": "プライバシー",
        "language_switch": "English",
        "sign_in_intro": "このページでは、当社が保有するあなたの個人データの確認・ダウンロード、訂正の依頼、目的ごとの同意の管理、データに関する請求ができます。メールアドレスを入力すると、サインイン用のコードをお送りします。",  # noqa: E501 - Japanese: two columns a character
        "email_label": "メールアドレス",
        "send_code": "コードを送信",
        "email_invalid": "有効なメールアドレスを入力してください。",
        "signed_out": "サインアウトしました。",
        "session_ended": "セッションが終了しました。もう一度サインインしてください。",
        "code_title": "コードの入力",
        "code_sent": "このアドレスのデータを当社が保有している場合、6桁のコードを記載したメールをお送りしました。コードは1回限り、10分間有効です。",  # noqa: E501 - Japanese: two columns a character
        "code_label": "コード",
        "sign_in": "サインイン",
        "code_wrong": "コードが正しくないか、期限切れまたは使用済みです。確認するか、新しいコードを請求してください。",  # noqa: E501 - Japanese: two columns a character
        "start_again": "新しいコードを請求",
        "sign_out": "サインアウト",
        "signed_in_as": "サインイン中:",
        "refused_title": "このフォームは無効になりました",
        "refused_body": "安全のため、このフォームは受け付けられませんでした。ページに戻ってもう一度お試しください。",  # noqa: E501 - Japanese: two columns a character
        "back": "ページに戻る",
        "data_title": "あなたのデータ",
        "no_records": "このアドレスの記録は保有していません。",
        "lead": "見込み客",
        "contact": "連絡先",
        "record_heading": "記録",
        "field": "項目",
        "value": "値",
        "created_at": "作成日時",
        "updated_at": "最終更新日時",
        "source": "取得元",
        "legal_basis": "法的根拠",
        "empty": "—",
        "consent_heading": "あなたの同意",
        "consent_intro": "目的ごとに、いつでも同意したり撤回したりできます。",
        "no_purposes": "同意の対象となる目的はありません。",
        "status_granted": "同意しています",
        "status_withdrawn": "同意を撤回しました",
        "status_refused": "同意していません",
        "status_none": "まだ確認していません",
        "grant_button": "同意する",
        "withdraw_button": "同意を撤回する",
        "consent_saved": "選択を記録しました。",
        "requests_heading": "当社からの確認のお願い",
        "request_deadline": "回答期限:",
        "answer_saved": "ご回答を記録しました。",
        "answer_gone": "この確認にはもう回答できません。",
        "actions": "できること",
        "download_json": "データをダウンロード（JSON）",
        "download_csv": "データをダウンロード（CSVファイルのZIP）",
        "requests_link": "訂正の依頼・請求・請求状況の確認",
        "requests_title": "あなたの請求",
        "filed_heading": "これまでの請求",
        "no_requests": "請求はありません。",
        "request_type": "請求",
        "request_status": "状況",
        "request_received": "受付日",
        "request_due": "回答期限",
        "new_request_heading": "請求する",
        "details_label": "お伝えになりたいこと（任意）",
        "file_button": "請求を送信",
        "request_filed": "請求を受け付けました。1か月以内に回答します。",
        "correction_heading": "訂正を依頼する",
        "correction_intro": "誤っている箇所を下で修正して送信してください。確認のうえ訂正します。",
        "correction_details_label": "その他の訂正（任意）",
        "correction_button": "訂正を依頼",
        "type_access": "開示",
        "type_portability": "データポータビリティ",
        "type_rectification": "訂正",
        "type_restriction": "処理の制限",
        "type_erasure": "消去",
        "type_objection": "異議",
        "explain_access": "当社が保有するあなたのデータの写し",
        "explain_portability": "他へ移すための機械可読形式のデータ",
        "explain_restriction": "データは保管したまま利用を停止します",
        "explain_erasure": "あなたのデータを削除します",
        "explain_objection": "データの利用方法に異議を申し立てます",
        "state_awaiting_verification": "ご本人確認待ち",
        "state_in_progress": "対応中",
        "state_completed": "完了",
        "state_rejected": "お断り",
    },
}


def negotiate(chosen: str | None, remembered: str | None, accept_language: str) -> str:
    """`?lang=`, then the cookie, then the browser's preference (by q-value), then English."""
    for candidate in (chosen, remembered):
        if candidate in LANGUAGES:
            return str(candidate)
    preferences: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            preferences.append((-quality, index, primary))
    return min(preferences)[2] if preferences else "en"


def render(
    template: str,
    *,
    language: str,
    organization_name: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    return render_page(
        template,
        language=language,
        organization_name=organization_name,
        status_code=status_code,
        templates=TEMPLATES,
        texts=TEXT,
        headers=headers,
        **context,
    )
