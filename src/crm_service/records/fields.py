"""The classifiable fields of each module: what a real CRM keeps about people and companies,
each with its default classification and, for the fields lists filter on, a blind index.

Classification decides how a value is stored: `none` plain, `personal` and `sensitive`
sealed under the data subject's key (accounts: the organization's key). `sensitive` also
drives masking and export blocking (later issues).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crm_service.crypto.blind_index import IndexKind
from crm_service.kit.modules import Module


class Classification(StrEnum):
    NONE = "none"
    PERSONAL = "personal"
    SENSITIVE = "sensitive"

    @property
    def sealed(self) -> bool:
        return self is not Classification.NONE


@dataclass(frozen=True)
class FieldSpec:
    name: str
    default: Classification
    label: str
    index: IndexKind | None = None


_P, _S, _N = Classification.PERSONAL, Classification.SENSITIVE, Classification.NONE

_PERSON: tuple[FieldSpec, ...] = (
    FieldSpec("first_name", _P, "First name"),
    FieldSpec("last_name", _P, "Last name"),
    FieldSpec("email", _P, "Email", IndexKind.EMAIL),
    FieldSpec("phone", _P, "Phone", IndexKind.PHONE),
    FieldSpec("mobile", _P, "Mobile", IndexKind.PHONE),
    FieldSpec("title", _N, "Job title"),
    FieldSpec("date_of_birth", _P, "Date of birth"),
    FieldSpec("mailing_street", _P, "Mailing street"),
    FieldSpec("mailing_city", _P, "Mailing city"),
    FieldSpec("mailing_state", _P, "Mailing state or region"),
    FieldSpec("mailing_postal_code", _P, "Mailing postal code"),
    FieldSpec("mailing_country", _P, "Mailing country"),
    FieldSpec("description", _P, "Description"),
    FieldSpec("national_id", _S, "National identification number"),
    FieldSpec("source_ip", _P, "Source IP address (web forms)"),
)

CATALOG: dict[Module, tuple[FieldSpec, ...]] = {
    Module.LEADS: (
        *_PERSON,
        FieldSpec("company", _N, "Company"),
        FieldSpec("website", _N, "Website"),
        FieldSpec("industry", _N, "Industry"),
    ),
    Module.CONTACTS: (*_PERSON, FieldSpec("department", _N, "Department")),
    Module.ACCOUNTS: (
        FieldSpec("name", _N, "Account name", IndexKind.TEXT),
        FieldSpec("website", _N, "Website"),
        FieldSpec("industry", _N, "Industry"),
        FieldSpec("phone", _P, "Phone", IndexKind.PHONE),
        FieldSpec("billing_street", _P, "Billing street"),
        FieldSpec("billing_city", _N, "Billing city"),
        FieldSpec("billing_state", _N, "Billing state or region"),
        FieldSpec("billing_postal_code", _P, "Billing postal code"),
        FieldSpec("billing_country", _N, "Billing country"),
        FieldSpec("description", _N, "Description"),
        FieldSpec("tax_id", _S, "Tax identification number"),
    ),
}


def field_names(module: Module) -> tuple[str, ...]:
    return tuple(spec.name for spec in CATALOG[module])


def spec_of(module: Module, name: str) -> FieldSpec:
    for spec in CATALOG[module]:
        if spec.name == name:
            return spec
    raise KeyError(name)
