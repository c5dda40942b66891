"""Who may handle privacy requests: a partner token with `crm.privacy.read|write`, or a
signed-in user with that scope and the administration right `manage_privacy`."""

from typing import Annotated

from fastapi import Depends

from crm_service.errors import Forbidden
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require
from crm_service.security.scopes import Scope


def _privacy(scope: Scope):  # noqa: ANN202 - a FastAPI dependency
    scoped = require(scope)

    async def dependency(principal: Annotated[Principal, Depends(scoped)]) -> Principal:
        if not principal.is_partner and not principal.has_right(Right.MANAGE_PRIVACY):
            raise Forbidden(f"This needs the administration right {Right.MANAGE_PRIVACY.value}.")
        return principal

    dependency.required_scopes = (scope,)  # type: ignore[attr-defined]
    return dependency


PrivacyRequestsRead = Annotated[Principal, Depends(_privacy(Scope.PRIVACY_READ))]
PrivacyRequestsWrite = Annotated[Principal, Depends(_privacy(Scope.PRIVACY_WRITE))]
