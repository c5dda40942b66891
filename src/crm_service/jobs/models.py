"""The worker's jobs: when each last ran. A job's row is also its lock while it runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base


class WorkerJob(Base):
    __tablename__ = "worker_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    # What the last run did (rows purged, ...).
    last_result: Mapped[int | None] = mapped_column(Integer)
