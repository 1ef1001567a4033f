"""A named person signed in at an identity provider (pure): who acted, as recorded in the
audit, the events and the timeline (DESIGN §3.7: issuer, subject, display name, role and
organisation)."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

ROLE_LABELS = {"social_care": "Social care", "prevent": "CTP Prevent", "control_room": "Control room",
               "ops": "Operations", "referrer": "Referrer"}


@dataclass(frozen=True)
class Person:
    issuer: str
    subject: str
    name: str
    role: str
    organisation: str | None
    relayed_by: str | None = None  # the staff system that named them (On-Behalf-Of); None: signed in

    @property
    def id(self) -> str:
        """A short stable actor id (≤ 100 characters): `person:` and a hash of issuer and subject —
        and, for a person a staff system names, of that system too: a system cannot act, or
        rename anyone, under the id of a person who signs in. The audit detail and the events
        carry the issuer, subject and name in full."""
        key = f"{self.issuer}\n{self.subject}" + (f"\nvia {self.relayed_by}" if self.relayed_by else "")
        return f"person:{hashlib.sha256(key.encode()).hexdigest()[:24]}"

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    def as_dict(self) -> dict[str, Any]:
        """issuer, subject, name, role, organisation (and `relayed_by` for a person a system named)."""
        data = asdict(self)
        if data["relayed_by"] is None:
            del data["relayed_by"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Person:
        return cls(**{k: data.get(k) for k in ("issuer", "subject", "name", "role", "organisation", "relayed_by")})

    @property
    def display(self) -> str:
        """The timeline's "by": the name with role and organisation."""
        org = f", {self.organisation}" if self.organisation else ""
        return f"{self.name} ({self.role_label}{org})"


ON_BEHALF_OF = "On-Behalf-Of"


def on_behalf_of(value: str, role: str, organisation: str | None, client_id: str | None = None) -> Person:
    """The person a staff system names in its signed `On-Behalf-Of` header (an RFC 9651
    dictionary: `iss="https://…", sub="…", name="…"`; a name outside ASCII as a display
    string, `name=%"Zo%c3%ab"`, or a byte sequence of its UTF-8, `name=:…:`). They act with
    the system's role and organisation. ValueError when it is malformed."""
    from shared.httpsig.sfv import DisplayString, parse_dictionary

    members = parse_dictionary(value)
    fields: dict[str, str] = {}
    for key, limit in (("iss", 300), ("sub", 200), ("name", 100)):
        item = members.get(key, (None, {}))[0]
        if isinstance(item, bytes):
            item = item.decode("utf-8")
        elif isinstance(item, DisplayString):
            item = str(item)
        if not isinstance(item, str) or not item.strip() or len(item) > limit:
            raise ValueError(f"On-Behalf-Of needs {key} as a string of 1 to {limit} characters")
        fields[key] = item.strip()
    if set(members) - {"iss", "sub", "name"}:
        raise ValueError("On-Behalf-Of takes iss, sub and name only")
    return Person(issuer=fields["iss"], subject=fields["sub"], name=fields["name"], role=role,
                  organisation=organisation, relayed_by=client_id)
