"""The per-request session (`DbSession`) and the route class that commits it once.

The session is opened by a dependency and committed by :class:`CommitOnSuccessRoute` after the
endpoint returns and before the response is sent (or, for an error that says it
`keeps_changes`, such as a failed second factor, before the error is rendered); FastAPI runs
yield-dependency cleanup only after sending, so committing there would acknowledge writes that
might still fail. An error
anywhere means no commit: the dependency's cleanup rolls the whole transaction back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.errors import CRMError

BeforeCommit = Callable[[AsyncSession], Awaitable[None]]
OnRollback = Callable[[AsyncSession], None]

# What features ask to run at the edges of every transaction (the audit log writes its
# pending events before the commit and forgets them on a rollback). The core calls them and
# imports no feature.
_before_commit: list[BeforeCommit] = []
_on_rollback: list[OnRollback] = []


def on_transaction_end(*, before_commit: BeforeCommit, on_rollback: OnRollback) -> None:
    """Register a feature's hooks (once, when its module is imported)."""
    if before_commit not in _before_commit:
        _before_commit.append(before_commit)
        _on_rollback.append(on_rollback)


async def commit(session: AsyncSession) -> None:
    """The one way to commit: whatever features noted during the transaction (audit events)
    is written first, in the same transaction."""
    for hook in _before_commit:
        await hook(session)
    await session.commit()


async def rollback(session: AsyncSession) -> None:
    for hook in _on_rollback:
        hook(session)
    await session.rollback()


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        request.state.db_session = session
        try:
            yield session
        except BaseException:
            await rollback(session)
            raise
        finally:
            request.state.db_session = None


DbSession = Annotated[AsyncSession, Depends(get_db_session)]


class CRMRouter(APIRouter):
    """The one router class of the service: its routes commit the request's session (see
    :class:`CommitOnSuccessRoute`), so no router can forget to and silently roll every write
    back. A test checks every mounted route."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("route_class", CommitOnSuccessRoute)
        super().__init__(**options)


class CommitOnSuccessRoute(APIRoute):
    """Commits the request's session when the endpoint succeeded, before the response goes out."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def commit_on_success(request: Request) -> Response:
            started = time.monotonic()
            try:
                response = await handler(request)
            except CRMError as error:
                session = getattr(request.state, "db_session", None)
                if session is not None and error.after_rollback is not None:
                    # A refusal: nothing the request did stays, only its record of refusing.
                    await rollback(session)
                    error.after_rollback(session)
                    await commit(session)
                elif error.keeps_changes and session is not None:
                    # A failed sign-in still counts: its throttling state must be kept.
                    await commit(session)
                if error.min_seconds:
                    await asyncio.sleep(max(0.0, started + error.min_seconds - time.monotonic()))
                raise
            session = getattr(request.state, "db_session", None)
            if session is not None and response.status_code < 400:
                await commit(session)
            return response

        return commit_on_success
