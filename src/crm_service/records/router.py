"""HTTP for a record module, built from one description so the three modules answer alike.

Each module gets: create (201 + Location), list (`GET`, query filters), search (`POST
/search`, the same filters in the body, keeping personal data out of URLs and access logs),
get (with `ETag`), partial update (`If-Match`), delete, and, for leads and contacts, the legal
basis and its history.
"""

# No `from __future__ import annotations`: FastAPI reads these endpoints' annotations at
# definition time, and they name the classes of the module being built.

import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, create_model

from crm_service.access.schemas import RecordShareList, RecordShareRead, RecordShareSet
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.kit.openapi import headers
from crm_service.kit.schemas import InputModel, single_line
from crm_service.records import legal_basis, sharing
from crm_service.records.etag import etag_for
from crm_service.records.export import ExportFormat, prepare_export
from crm_service.records.models import PersonColumns
from crm_service.records.schemas import (
    FieldChange,
    HistoryEntryRead,
    HistoryPage,
    HistoryQuery,
    LegalBasisEntryRead,
    LegalBasisHistory,
    LegalBasisSet,
)
from crm_service.records.service import PAGING_KEYS, RecordService
from crm_service.security.principal import Principal, require
from crm_service.security.scopes import Scope

IfMatch = Annotated[
    single_line(256) | None,
    Header(
        alias="If-Match",
        description="The `ETag` you read; the write is refused with 412 if the record changed.",
    ),
]


@dataclass(frozen=True)
class RecordModuleSpec:
    service: RecordService[Any]
    singular: str  # "Contact": operation ids read createContact, listContacts
    plural: str
    create_schema: type[BaseModel]
    update_schema: type[BaseModel]
    read_schema: type[BaseModel]
    list_schema: type[BaseModel]
    query_schema: type[BaseModel]
    search_schema: type[BaseModel]
    read_scope: Scope
    write_scope: Scope
    delete_scope: Scope
    has_legal_basis: bool


def build_record_router(spec: RecordModuleSpec) -> CRMRouter:
    module = spec.service.module.value
    router = CRMRouter(prefix=f"/v1/{module}", tags=[module])
    service = spec.service
    Reader = Annotated[Principal, Depends(require(spec.read_scope))]
    Writer = Annotated[Principal, Depends(require(spec.write_scope))]
    Deleter = Annotated[Principal, Depends(require(spec.delete_scope))]
    CreateSchema, UpdateSchema = spec.create_schema, spec.update_schema
    ReadSchema, ListSchema, QuerySchema = spec.read_schema, spec.list_schema, spec.query_schema
    SearchSchema = spec.search_schema
    noun = spec.singular.lower()
    # A lead's or contact's data subject can be erased: the record then answers 410
    # `erased`, and writing an erased email or phone again 409 `blocklisted`.
    person = issubclass(service.model, PersonColumns)
    erased = (410,) if person else ()
    blocked = (409,) if person else ()
    # Exports need `crm.export` beside the module's read scope. This is the one place a
    # partner client's export scope is checked: partner tokens carry scopes, users have all.
    Exporter = Annotated[Principal, Depends(require(Scope.EXPORT, spec.read_scope))]
    # The list's exact-match filters, without paging: an export holds every match.
    export_fields: dict[str, Any] = {
        "format": (ExportFormat, ExportFormat.CSV),
        **{
            name: (field.annotation, field)
            for name, field in SearchSchema.model_fields.items()
            if name not in PAGING_KEYS
        },
    }
    ExportQuery = create_model(
        f"{spec.singular}ExportQuery",
        __base__=InputModel,
        __doc__=f"The filters of `GET /v1/{module}` and the export's format.",
        **export_fields,
    )

    def present(record: Any, response: Response | None = None) -> BaseModel:
        if response is not None:
            response.headers["ETag"] = etag_for(record.version)
        return ReadSchema.model_validate(record)

    def present_page(page: Any) -> BaseModel:
        return ListSchema(
            data=[ReadSchema.model_validate(item) for item in page.items],
            next_cursor=page.next_cursor,
        )

    @router.post(
        "",
        operation_id=f"create{spec.singular}",
        summary=f"Create a {noun}",
        description=f"Needs `{spec.write_scope.value}` and the profile's create operation. "
        "Personal and sensitive fields are stored encrypted. Answers the new "
        f"{noun} with its `ETag` and `Location`.",
        status_code=status.HTTP_201_CREATED,
        response_model=ReadSchema,
        responses={201: headers("ETag"), **problem_responses(401, 403, *blocked, 413, 422)},
    )
    async def create(
        payload: CreateSchema, principal: Writer, session: DbSession, response: Response
    ) -> Any:
        record = await service.create(session=session, principal=principal, payload=payload)
        response.headers["Location"] = f"/v1/{module}/{record.id}"
        return present(record, response)

    @router.get(
        "",
        operation_id=f"list{spec.plural}",
        summary=f"List {module}, newest first by default, with exact-match filters",
        description=f"The {module} you may see (sharing rules apply), `limit` at a time; pass "
        "`next_cursor` back as `cursor` for the next page. Filters match exactly; sensitive "
        "values you may not see are answered as null and named in `masked_fields`. Records of "
        "a data subject who restricted processing (GDPR Art. 18) are left out, whoever asks.",
        response_model=ListSchema,
        responses=problem_responses(401, 403, 422),
    )
    async def list_(
        query: Annotated[QuerySchema, Query()], principal: Reader, session: DbSession
    ) -> Any:
        page = await service.list(session=session, principal=principal, query=query)
        return present_page(page)

    @router.post(
        "/search",
        operation_id=f"search{spec.plural}",
        summary=f"List {module} by filters sent in the body (keeps them out of URLs)",
        description=f"The same list as `GET /v1/{module}`, its filters in a JSON body, so an "
        "email or phone never appears in a URL or an access log.",
        response_model=ListSchema,
        responses=problem_responses(401, 403, 422),
    )
    async def search(query: SearchSchema, principal: Reader, session: DbSession) -> Any:
        page = await service.list(session=session, principal=principal, query=query)
        return present_page(page)

    @router.get(
        "/export",
        operation_id=f"export{spec.plural}",
        summary=f"Export every {noun} you may see, streamed as CSV or NDJSON",
        description=f"Needs `{Scope.EXPORT.value}` and `{spec.read_scope.value}`, and the "
        "profile's export operation. The same exact-match filters as the list; sharing "
        "rules apply; records of a restricted or erased data subject are left out. Fields "
        "the compliance settings withhold on the export channel are absent (no column, no "
        "key) and named in `Withheld-Fields`; sensitive fields your profile may not see are "
        "empty and named in `Masked-Fields`. CSV is UTF-8 with a header row; a cell a "
        "spreadsheet would read as a formula starts with `'`. NDJSON holds one record per "
        "line, shaped like `GET` answers it. Audited once (`records.exported`), with the "
        "number of rows sent, also when the download is cut.",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The export, streamed.",
                "content": {
                    "text/csv": {"schema": {"type": "string", "maxLength": 2**40}},
                    "application/x-ndjson": {"schema": {"type": "string", "maxLength": 2**40}},
                },
                **headers("Withheld-Fields", "Masked-Fields", "Content-Disposition"),
            },
            **problem_responses(401, 403, 422),
        },
    )
    async def export(
        query: Annotated[ExportQuery, Query()],
        principal: Exporter,
        session: DbSession,
        request: Request,
    ) -> StreamingResponse:
        stream = await prepare_export(
            service=service,
            session=session,
            principal=principal,
            query=query,
            read_schema=ReadSchema,
            sessionmaker=request.app.state.sessionmaker,
        )
        return StreamingResponse(
            stream.body,
            media_type=stream.format.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{stream.filename}"',
                "Withheld-Fields": ",".join(stream.disclosure.withheld),
                "Masked-Fields": ",".join(stream.disclosure.masked),
                "Cache-Control": "no-store",
            },
        )

    @router.get(
        "/{record_id}",
        operation_id=f"get{spec.singular}",
        summary=f"Get a {noun}",
        description=f"One {noun} you may see, with its `ETag`; 404 for one you may not know "
        "exists. Revealing sensitive values is audited. A lead or contact whose data subject "
        "restricted processing (GDPR Art. 18) answers 423 `processing-restricted` unless your "
        "profile has the right `view_restricted` (partner tokens never do); such a read is "
        "audited.",
        response_model=ReadSchema,
        responses={200: headers("ETag"), **problem_responses(401, 403, 404, *erased, 422, 423)},
    )
    async def get(
        record_id: uuid.UUID, principal: Reader, session: DbSession, response: Response
    ) -> Any:
        record = await service.get(session=session, principal=principal, record_id=record_id)
        return present(record, response)

    @router.patch(
        "/{record_id}",
        operation_id=f"update{spec.singular}",
        summary=f"Change some fields of a {noun}",
        description=f"Fields left out keep their value; null clears an optional one. With "
        f"`If-Match`, a {noun} changed since you read it answers 412 and is not touched.",
        response_model=ReadSchema,
        responses={
            200: headers("ETag"),
            **problem_responses(401, 403, 404, 409, *erased, 412, 413, 422, 423),
        },
    )
    async def update(
        record_id: uuid.UUID,
        payload: UpdateSchema,
        principal: Writer,
        session: DbSession,
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        record = await service.update(
            session=session,
            principal=principal,
            record_id=record_id,
            payload=payload,
            if_match=if_match,
        )
        return present(record, response)

    @router.delete(
        "/{record_id}",
        operation_id=f"delete{spec.singular}",
        summary=f"Delete a {noun}",
        description=f"Moves the {noun} to the recycle bin, from which it can be restored until "
        f"the worker purges it. Needs `{spec.delete_scope.value}`.",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problem_responses(401, 403, 404, *erased, 412, 422, 423),
    )
    async def delete(
        record_id: uuid.UUID, principal: Deleter, session: DbSession, if_match: IfMatch = None
    ) -> Response:
        await service.delete(
            session=session, principal=principal, record_id=record_id, if_match=if_match
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get(
        "/{record_id}/history",
        operation_id=f"get{spec.singular}History",
        summary=f"Each change of the {noun}: who, when, which fields, old and new values",
        description="Newest first, paged like lists. Old and new values are sealed under the "
        "data subject's key; after an erasure the entries remain without them. 423 for a "
        "restricted data subject, as for the record itself.",
        response_model=HistoryPage,
        responses=problem_responses(401, 403, 404, 422, 423),
    )
    async def history(
        record_id: uuid.UUID,
        query: Annotated[HistoryQuery, Query()],
        principal: Reader,
        session: DbSession,
    ) -> Any:
        items, disclosure, next_cursor = await service.history(
            session=session,
            principal=principal,
            record_id=record_id,
            limit=query.limit,
            cursor=query.cursor,
        )
        return HistoryPage(
            data=[
                HistoryEntryRead(
                    id=item.entry.id,
                    occurred_at=item.entry.occurred_at,
                    actor_type=item.entry.actor_type,
                    actor_id=item.entry.actor_id,
                    action=item.entry.action,
                    fields=json.loads(item.entry.fields),
                    changes=None
                    if item.changes is None
                    else {k: FieldChange(old=o, new=n) for k, (o, n) in item.changes.items()},
                    erased=item.erased,
                )
                for item in items
            ],
            masked_fields=list(disclosure.masked),
            withheld_fields=list(disclosure.withheld),
            next_cursor=next_cursor,
        )

    @router.get(
        "/{record_id}/shares",
        operation_id=f"list{spec.singular}Shares",
        summary=f"The groups this {noun} is shared with",
        description="Each group and whether it reads or also writes. 423 for a restricted data "
        "subject, as for the record itself.",
        response_model=RecordShareList,
        responses=problem_responses(401, 403, 404, *erased, 422, 423),
    )
    async def list_shares(record_id: uuid.UUID, principal: Reader, session: DbSession) -> Any:
        shares = await sharing.shares(
            service=service, session=session, principal=principal, record_id=record_id
        )
        return RecordShareList(data=[RecordShareRead.model_validate(s) for s in shares])

    @router.put(
        "/{record_id}/shares/{group_id}",
        operation_id=f"share{spec.singular}",
        summary=f"Share this {noun} with a group (read_only or read_write)",
        description="Creates or changes the share; the group's members see the record on their "
        "next request. Audited.",
        response_model=RecordShareRead,
        responses=problem_responses(401, 403, 404, *erased, 422, 423),
    )
    async def share(
        record_id: uuid.UUID,
        group_id: uuid.UUID,
        payload: RecordShareSet,
        principal: Writer,
        session: DbSession,
        request: Request,
    ) -> Any:
        created = await sharing.share(
            service=service,
            session=session,
            principal=principal,
            record_id=record_id,
            group_id=group_id,
            access=payload.access,
            now=request.app.state.clock.now(),
        )
        return RecordShareRead.model_validate(created)

    @router.delete(
        "/{record_id}/shares/{group_id}",
        operation_id=f"unshare{spec.singular}",
        summary=f"Stop sharing this {noun} with a group",
        description="The group's members keep whatever else lets them see the record.",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problem_responses(401, 403, 404, *erased, 422, 423),
    )
    async def unshare(
        record_id: uuid.UUID, group_id: uuid.UUID, principal: Writer, session: DbSession
    ) -> Response:
        await sharing.unshare(
            service=service,
            session=session,
            principal=principal,
            record_id=record_id,
            group_id=group_id,
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    if spec.has_legal_basis:

        @router.get(
            "/{record_id}/legal-basis",
            operation_id=f"get{spec.singular}LegalBasis",
            summary=f"The {noun}'s legal basis of processing and every earlier setting",
            description="The current basis and the history of every setting, newest first. "
            "423 for a restricted data subject, as for the record itself.",
            response_model=LegalBasisHistory,
            responses=problem_responses(401, 403, 404, *erased, 422, 423),
        )
        async def get_legal_basis(
            record_id: uuid.UUID, principal: Reader, session: DbSession
        ) -> Any:
            history = await legal_basis.legal_basis_history(
                service=service, session=session, principal=principal, record_id=record_id
            )
            entries = [LegalBasisEntryRead.model_validate(entry) for entry in history]
            return LegalBasisHistory(current=entries[0] if entries else None, history=entries)

        @router.put(
            "/{record_id}/legal-basis",
            operation_id=f"set{spec.singular}LegalBasis",
            summary=f"Set the {noun}'s legal basis of processing (the old one is kept)",
            description="`legitimate_interests` needs the assessment text. The previous basis "
            "stays in the history. Audited.",
            response_model=LegalBasisEntryRead,
            responses=problem_responses(401, 403, 404, 409, *erased, 422, 423),
        )
        async def set_legal_basis(
            record_id: uuid.UUID, payload: LegalBasisSet, principal: Writer, session: DbSession
        ) -> Any:
            entry = await legal_basis.set_legal_basis(
                service=service,
                session=session,
                principal=principal,
                record_id=record_id,
                payload=payload,
            )
            return LegalBasisEntryRead.model_validate(entry)

    return router
