"""Lead rules, and conversion of a lead into a contact (and account) in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryAction
from crm_service.audit.service import record as audit
from crm_service.db.base import utcnow
from crm_service.errors import Conflict
from crm_service.kit.modules import Module
from crm_service.privacy.blocklist import audited_refusal
from crm_service.records.accounts.models import Account
from crm_service.records.accounts.service import accounts as account_service
from crm_service.records.contacts.models import Contact
from crm_service.records.contacts.service import contacts as contact_service
from crm_service.records.disclosure import DisclosurePolicy, Shown, View
from crm_service.records.etag import check_if_match
from crm_service.records.events import RecordEventKind, emit
from crm_service.records.fields import CATALOG
from crm_service.records.leads.models import Lead, LeadStatus
from crm_service.records.leads.repository import LeadRepository
from crm_service.records.leads.schemas import LeadConvert
from crm_service.records.models import LegalBasis
from crm_service.records.processing import Change
from crm_service.records.repository import LegalBasisRepository
from crm_service.records.schemas import LegalBasisSet
from crm_service.records.service import (
    Origin,
    RecordService,
    require_operation,
    unknown_reference,
)
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal

# What a lead and a contact both hold about the person, carried over on conversion.
PERSON_FIELDS = tuple(
    spec.name
    for spec in CATALOG[Module.LEADS]
    if spec.name in {other.name for other in CATALOG[Module.CONTACTS]}
)


@dataclass(frozen=True)
class Conversion:
    lead: Lead
    contact: Contact
    account: Account | None


class LeadService(RecordService[Lead]):
    module = Module.LEADS
    model = Lead
    repository_class = LeadRepository

    def check_state(self, record: Lead, change: Change) -> None:
        """A converted lead is closed: its contact carries the person on. It can still be
        shared, and deleted (the contact stays the same data subject)."""
        if record.status != LeadStatus.CONVERTED and record.converted_contact_id is None:
            return
        if change is Change.CONVERT:
            raise Conflict("This lead is already converted.")
        if change in (Change.UPDATE, Change.LEGAL_BASIS):
            raise Conflict("This lead is converted and closed; change the contact instead.")

    async def convert(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        lead_id: uuid.UUID,
        payload: LeadConvert,
        if_match: str | None,
    ) -> Conversion:
        """Create the contact (and account), carry source and legal basis, close the lead.

        Runs in the request's transaction: if any step fails nothing of it is kept.
        """
        lead, leads = await self.get_for_change(
            session=session, principal=principal, record_id=lead_id, change=Change.CONVERT
        )
        require_operation(principal, Module.CONTACTS, Operation.CREATE)
        check_if_match(if_match, lead.version)

        # The account and the contact are made as any account and contact are, so each has
        # its history and a created event naming what was set.
        account: Account | None = None
        accounts = await account_service.repository(session, principal)
        if payload.account_id is not None:
            account = await accounts.get(payload.account_id)
            if account is None:
                raise unknown_reference("account_id", "account")
        elif payload.create_account and lead.company:
            require_operation(principal, Module.ACCOUNTS, Operation.CREATE)
            account = await account_service.insert(
                session=session,
                principal=principal,
                repository=accounts,
                values={
                    "name": lead.company,
                    "website": lead.website,
                    "industry": lead.industry,
                    "owner_id": lead.owner_id,
                },
            )

        legal_basis: LegalBasisSet | None = None
        if lead.legal_basis is not None:
            current = (
                await LegalBasisRepository(session, principal.organization_id).history(
                    Module.LEADS, lead.id
                )
            )[0]
            legal_basis = LegalBasisSet(
                basis=LegalBasis(current.basis), assessment=current.assessment
            )
        # The contact is the same data subject: same subject id, so the same data key, and
        # the lead's origin, since where the person came from does not change.
        contacts = await contact_service.repository(session, principal)
        with audited_refusal(principal, target_type=self.noun, target_id=lead.id):
            contact = await contact_service.insert(
                session=session,
                principal=principal,
                repository=contacts,
                values={
                    **{field: getattr(lead, field) for field in PERSON_FIELDS},
                    "owner_id": lead.owner_id,
                    "account_id": account.id if account is not None else None,
                },
                origin=Origin(
                    subject_id=lead.subject_id,
                    new_subject=False,
                    source={
                        "source_channel": lead.source_channel,
                        "source_client_id": lead.source_client_id,
                        "source_batch_id": lead.source_batch_id,
                        "source_form": lead.source_form,
                    },
                ),
                legal_basis=legal_basis,
                carried_from_lead_id=lead.id,
            )

        before_status = lead.status
        lead.status = LeadStatus.CONVERTED.value
        lead.converted_at = utcnow()
        lead.converted_contact_id = contact.id
        lead.converted_account_id = account.id if account is not None else None
        await leads.save(lead)
        await emit(session, self.module, RecordEventKind.CONVERTED, lead)
        await self.note(
            session,
            principal,
            leads,
            lead,
            HistoryAction.CONVERTED,
            {
                "status": (before_status, lead.status),
                "converted_contact_id": (None, contact.id),
                "converted_account_id": (None, lead.converted_account_id),
            },
        )
        audit(
            session,
            principal,
            AuditAction.RECORD_CONVERTED,
            target_type=self.noun,
            target_id=lead.id,
            fields=["status", "converted_contact_id", "converted_account_id"],
        )
        # The response shows all three, as one response: one reveal event names them all.
        await DisclosurePolicy(session, principal).show(
            View.CONVERSION,
            Shown(leads, [lead]),
            Shown(contacts, [contact]),
            *([Shown(accounts, [account])] if account is not None else []),
        )
        return Conversion(lead=lead, contact=contact, account=account)


leads = LeadService()
