"""HTTP for organization settings: /v1/settings/fields/{module}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Request, Response, status

from crm_service.auth import sso
from crm_service.auth.schemas import IdentityLink, IdentityProviderRead, IdentityProviderSet
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.jobs.resealing import reseal_records
from crm_service.kit.modules import Module
from crm_service.orgs import compliance as org_compliance
from crm_service.orgs import security as org_security
from crm_service.orgs import settings as org_settings
from crm_service.orgs.schemas import (
    ComplianceSettingsBody,
    IpAllowlistRead,
    IpAllowlistUpdate,
    ModuleFields,
    ModuleFieldsUpdate,
    SecuritySettings,
)
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(prefix="/v1/settings", tags=["settings"])
Admin = Annotated[Principal, Depends(require_right(Right.MANAGE_SETTINGS))]
IntegrationsAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_INTEGRATIONS))]


@router.get(
    "/fields/{module}",
    operation_id="getFieldClassification",
    summary="How each field of a module is classified: none, personal or sensitive",
    response_model=ModuleFields,
    responses=problem_responses(401, 403, 422),
)
async def get_fields(module: Module, principal: Admin, session: DbSession) -> ModuleFields:
    """Each field of the module with its classification and default. Needs the right
    `manage_settings`.
    """
    return await org_settings.module_fields(session=session, principal=principal, module=module)


@router.put(
    "/fields/{module}",
    operation_id="classifyFields",
    summary="Reclassify fields; stored values are re-sealed in the background, online",
    response_model=ModuleFields,
    responses=problem_responses(401, 403, 422),
)
async def classify_fields(
    module: Module,
    payload: ModuleFieldsUpdate,
    principal: Admin,
    session: DbSession,
    request: Request,
    background: BackgroundTasks,
) -> ModuleFields:
    """Change the classification of the fields named; the module's stored values are re-sealed in
    the background while reads stay correct. Audited.
    """
    change = await org_settings.classify_fields(
        session=session, principal=principal, module=module, payload=payload
    )
    if change.changed:
        # Runs after the response (and so after the commit); resumable by
        # `crm-service keys reseal` if the process stops before it finishes.
        background.add_task(
            reseal_records,
            request.app.state.sessionmaker,
            organization_id=principal.organization_id,
            module=module,
            stale_keys_only=False,
        )
    return change.fields


@router.get(
    "/ip-allowlist",
    operation_id="getIpAllowlist",
    summary="Where the organization's users may sign in and call the API from",
    response_model=IpAllowlistRead,
    responses=problem_responses(401, 403),
)
async def get_ip_allowlist(principal: Admin, session: DbSession) -> IpAllowlistRead:
    """Whether the allowlist is on, its networks, and the address this request came from."""
    return await org_security.get_ip_allowlist(session=session, principal=principal)


@router.put(
    "/ip-allowlist",
    operation_id="setIpAllowlist",
    summary="Replace the IP allowlist (refused with 409 if it would lock you out)",
    response_model=IpAllowlistRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def set_ip_allowlist(
    payload: IpAllowlistUpdate, principal: Admin, session: DbSession
) -> IpAllowlistRead:
    """Replace the organization's allowlist. A list that excludes your own address is refused with
    409 unless `confirm_self_lockout` is true. Audited.
    """
    return await org_security.set_ip_allowlist(
        session=session, principal=principal, payload=payload
    )


@router.get(
    "/security",
    operation_id="getSecuritySettings",
    summary="Sign-in security settings of the organization",
    response_model=SecuritySettings,
    responses=problem_responses(401, 403),
)
async def get_security(principal: Admin, session: DbSession) -> SecuritySettings:
    """Whether two-factor is mandatory for every user."""
    return await org_security.get_security(session=session, principal=principal)


@router.put(
    "/security",
    operation_id="setSecuritySettings",
    summary="Change sign-in security settings (e.g. make two-factor mandatory)",
    response_model=SecuritySettings,
    responses=problem_responses(401, 403, 422),
)
async def set_security(
    payload: SecuritySettings, principal: Admin, session: DbSession
) -> SecuritySettings:
    """Make two-factor mandatory (users without one enrol at their next sign-in) or optional.
    Audited.
    """
    return await org_security.set_security(session=session, principal=principal, payload=payload)


@router.get(
    "/sso",
    operation_id="getSingleSignOn",
    summary="The organization's OpenID Connect provider (the secret is never shown)",
    response_model=IdentityProviderRead,
    responses=problem_responses(401, 403, 404),
)
async def get_single_sign_on(
    principal: Admin, session: DbSession, request: Request
) -> IdentityProviderRead:
    """The provider's settings and the URLs to register there; the client secret is never answered.
    404 when none is configured.
    """
    return await org_security.get_identity_provider(
        session=session,
        principal=principal,
        public_base_url=request.app.state.settings.public_base_url,
    )


@router.put(
    "/sso",
    operation_id="setSingleSignOn",
    summary="Configure OpenID Connect single sign-on (checked by discovery)",
    response_model=IdentityProviderRead,
    responses=problem_responses(401, 403, 422),
)
async def set_single_sign_on(
    payload: IdentityProviderSet, principal: Admin, session: DbSession, request: Request
) -> IdentityProviderRead:
    """Configure the OpenID provider; the issuer is checked by discovery before anything is saved.
    The client secret is stored encrypted.
    """
    return await org_security.set_identity_provider(
        session=session,
        principal=principal,
        payload=payload,
        public_base_url=request.app.state.settings.public_base_url,
    )


@router.delete(
    "/sso",
    operation_id="removeSingleSignOn",
    summary="Switch single sign-on off",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
async def remove_single_sign_on(principal: Admin, session: DbSession) -> Response:
    """Users of the organization sign in with their passwords again."""
    await org_security.remove_identity_provider(session=session, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/sso/identities",
    operation_id="linkIdentity",
    summary="Link an existing user to their subject at the identity provider",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def link_identity(
    payload: IdentityLink, principal: Admin, session: DbSession, request: Request
) -> Response:
    """Connect a user of the organization to their `sub` at the provider, so their first single
    sign-on finds them. A subject or user already linked answers 409.
    """
    await sso.link_identity(
        session=session,
        principal=principal,
        user_id=payload.user_id,
        subject=payload.subject,
        now=request.app.state.clock.now(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/compliance",
    operation_id="getComplianceSettings",
    summary="Which classifications each channel data leaves by withholds",
    response_model=ComplianceSettingsBody,
    responses=problem_responses(401, 403),
)
async def get_compliance(principal: IntegrationsAdmin, session: DbSession) -> Any:
    """Per channel (`api`: partner clients, `export`, `integrations`: webhooks), the
    classifications whose fields are left out of what leaves by it. Needs the right
    `manage_integrations`.
    """
    return await org_compliance.get_compliance(session=session, principal=principal)


@router.put(
    "/compliance",
    operation_id="setComplianceSettings",
    summary="Replace the compliance settings; they hold from the next request on",
    response_model=ComplianceSettingsBody,
    responses=problem_responses(401, 403, 422),
)
async def set_compliance(
    payload: ComplianceSettingsBody, principal: IntegrationsAdmin, session: DbSession
) -> Any:
    """Withheld fields are absent (not null) from partner responses, exports and webhook
    payloads, and each names them in `withheld_fields`. A channel left out withholds nothing.
    Audited.
    """
    return await org_compliance.set_compliance(
        session=session, principal=principal, payload=payload
    )
