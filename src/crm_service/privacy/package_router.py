"""HTTP of access and portability packages for staff:
`GET /v1/privacy/subjects/{subject_id}/package`.

Built on the fly with the caller's disclosure. Privacy requests add the stored package the
subject downloads (`privacy/package.py`: store_package, load_package).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.kit.openapi import headers
from crm_service.kit.schemas import InputModel
from crm_service.privacy.package import PackageFormat, RenderedPackage, disclose_subject_package
from crm_service.privacy.package_schemas import PackageDocument
from crm_service.security.principal import Principal, require
from crm_service.security.scopes import Scope

router = CRMRouter(prefix="/v1/privacy", tags=["privacy"])
# Users also need the right manage_privacy (checked by the service); a partner client is
# limited by its scopes, as everywhere.
PackageReader = Annotated[Principal, Depends(require(Scope.PRIVACY_READ))]


class PackageQuery(InputModel):
    format: PackageFormat = PackageFormat.JSON


# What a package download answers, wherever it comes from (a subject, a privacy request).
PACKAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The package: one JSON document, or a zip of CSV files.",
        "model": PackageDocument,
        "content": {
            "application/zip": {
                "schema": {"type": "string", "format": "binary", "maxLength": 2**40}
            },
        },
        **headers("Content-Disposition"),
    },
    **problem_responses(401, 403, 404, 422),
}


def attachment(rendered: RenderedPackage) -> Response:
    """The rendered package as a download that no cache keeps."""
    return Response(
        rendered.body,
        media_type=rendered.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{rendered.filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/subjects/{subject_id}/package",
    operation_id="getDataSubjectPackage",
    summary="Everything held on a data subject, as JSON or as a zip of CSV files",
    description="Every lead and contact of the data subject (live and in the recycle bin; an "
    "erased one says so), where each came from, their legal-basis settings, record history, "
    "consent events and consent requests. `format=csv` answers a zip of one CSV file per "
    "kind with a README.txt. Values are shown as your channel allows (sensitive fields "
    "masked without `view_sensitive`, classifications the compliance settings withhold left "
    "out); revealing sensitive values is audited, and so is the download (format, channel, "
    "never a value). Needs `crm.privacy.read` and, for a user, the right `manage_privacy`.",
    response_class=Response,
    responses=PACKAGE_RESPONSES,
)
async def get_subject_package(
    subject_id: uuid.UUID,
    query: Annotated[PackageQuery, Query()],
    principal: PackageReader,
    session: DbSession,
    request: Request,
) -> Response:
    rendered = await disclose_subject_package(
        session=session,
        principal=principal,
        subject_id=subject_id,
        fmt=query.format,
        now=request.app.state.clock.now(),
    )
    return attachment(rendered)
