"""Mail settings an operator cannot get wrong silently, and that never echo a password."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import MASTER_KEY, run
from tests.test_cli_errors import CONFIG, one_line


def test_an_smtp_url_of_another_scheme_is_refused_without_quoting_it(tmp_path: Path) -> None:
    line = one_line(
        run(tmp_path, "migrate", CRM_SMTP_URL="http://relay:s3cr3t-pw@mail.example.com"), CONFIG
    )
    assert line.startswith("crm-service: CRM_SMTP_URL: must be smtp://, smtps:// or smtp+starttls")
    assert "s3cr3t-pw" not in line


def test_production_mail_needs_a_from_address(tmp_path: Path) -> None:
    line = one_line(
        run(
            tmp_path,
            "migrate",
            CRM_ENV="production",
            CRM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
            CRM_MASTER_KEY=MASTER_KEY,
            CRM_PUBLIC_BASE_URL="https://crm.example.com",
            CRM_SMTP_URL="smtps://relay:s3cr3t-pw@mail.example.com",
        ),
        CONFIG,
    )
    assert "CRM_MAIL_FROM" in line
    assert "s3cr3t-pw" not in line
