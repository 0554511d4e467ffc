"""Enumerate People with the search endpoint and hydrate them in batches of 100 cio_ids.

Search pages carry only identifiers (`PeopleSearch` walks one pass of the cursor; `listing.py` lists
everyone before hydration starts); attributes come from
``POST /v1/customers/attributes?id_type=cio_id``. Hydrating by ``cio_id`` (never by ``id``) keeps
email-only People, whose ``id`` is null.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from .errors import UnexpectedResponseError, UnhydratedPeopleError
from .pagination import SearchCursor

if TYPE_CHECKING:
    import logging

    import requests

    from .stats import RunStats

HYDRATION_BATCH = 100  # the attributes endpoint takes 1 to 100 ids
EVERYONE_FILTER = {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}

CioIdForm = Literal["raw", "prefixed"]
CIO_ID_FORMS: tuple[CioIdForm, CioIdForm] = ("raw", "prefixed")  # the first is tried first
CIO_PREFIX = "cio_"
FORM_EXAMPLES: Mapping[CioIdForm, str] = {"raw": "3000001", "prefixed": "cio_3000001"}
# Share of the People a run lists that may go unhydrated (deleted since the search) before the
# run fails; and the smallest chunk whose total loss fails it at once (a few People of a short
# last chunk deleted meanwhile is no evidence of anything).
UNHYDRATED_TOLERANCE = 0.01
WHOLE_CHUNK_MINIMUM = 10


class Sender(Protocol):
    """Sends one App API request, rate-limited and retried (the stream does)."""

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response: ...


def search_filter(
    segment_ids: list[int], audience: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The search body: everybody, or the People of any of ``segment_ids`` (segments OR-ed), or
    those ``audience`` (the ``filter`` setting) selects; both given, the People in both (AND)."""
    segments = {"or": [{"segment": {"id": sid}} for sid in segment_ids]} if segment_ids else None
    if audience is None:
        return {"filter": segments or EVERYONE_FILTER}
    if segments is None:
        return {"filter": dict(audience)}
    return {"filter": {"and": [dict(audience), segments]}}


def _text(value: object) -> str | None:
    """Identifiers arrive as strings, numbers, null or ``""``; ``""`` means absent."""
    if value is None:
        return None
    text = str(value)
    return text or None


class Identifier(NamedTuple):
    """One search hit: the ids of a Person, before hydration (a tuple: a listing holds millions,
    and reads them back from its spill file, so they are small and quick to build)."""

    cio_id: str
    id: str | None
    email: str | None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Identifier | None:
        cio_id = _text(raw.get("cio_id"))
        if cio_id is None:
            return None
        return cls(cio_id=cio_id, id=_text(raw.get("id")), email=_text(raw.get("email")))


def person_record(hit: Identifier, customer: Mapping[str, Any]) -> dict[str, Any]:
    """The ``people`` record: ids from search (else from the profile), attributes as returned."""
    attributes = customer.get("attributes") or {}
    identifiers = customer.get("identifiers") or {}
    return {
        "cio_id": hit.cio_id,
        "id": hit.id or _text(identifiers.get("id")) or _text(attributes.get("id")),
        "email": hit.email or _text(identifiers.get("email")) or _text(attributes.get("email")),
        "attributes": dict(attributes),
        "unsubscribed": bool(customer.get("unsubscribed", False)),
    }


def bare_cio_id(cio_id: str) -> str:
    """A cio_id without the ``cio_`` prefix (Customer.io's own cio_ids are hex digits)."""
    return cio_id.removeprefix(CIO_PREFIX)


def in_form(cio_id: str, form: CioIdForm) -> str:
    """``cio_id`` as the attributes endpoint is asked for it: raw or ``cio_``-prefixed."""
    bare = bare_cio_id(cio_id)
    return bare if form == "raw" else CIO_PREFIX + bare


def other_form(form: CioIdForm) -> CioIdForm:
    return CIO_ID_FORMS[1] if form == CIO_ID_FORMS[0] else CIO_ID_FORMS[0]


def _customer_cio_id(customer: Mapping[str, Any]) -> str | None:
    return _text((customer.get("identifiers") or {}).get("cio_id")) or _text(
        (customer.get("attributes") or {}).get("cio_id")
    )


class PeopleSearch:
    """One pass of the search cursor, a page of identifiers at a time (loop guards included)."""

    def __init__(self, api: Sender, body: dict[str, Any], page_size: int) -> None:
        self.api = api
        self.body = body
        self.page_size = page_size
        self.cursor = SearchCursor()

    def pages(self) -> Iterator[list[Identifier]]:
        """Every page's identifiers, in order (the last page may be empty)."""
        while not self.cursor.finished:
            params: dict[str, Any] = {"limit": self.page_size}
            if self.cursor.start is not None:
                params["start"] = self.cursor.start
            page = self.api.send("POST", "/customers", params=params, json=self.body).json()
            hits = [
                hit for raw in page.get("identifiers") or [] if (hit := Identifier.from_api(raw))
            ]
            if not hits and page.get("ids"):
                raise UnexpectedResponseError(
                    "Customer.io's People search answered without `identifiers` (only `ids`); "
                    "this tap needs the current App API: check api_url points at "
                    "https://api.customer.io or a faithful proxy."
                )
            self.cursor.advance(page.get("next"), [hit.cio_id for hit in hits])
            yield hits


class Hydrator:
    """Fetches the profiles of one chunk and returns its records in the chunk's order.

    The vendor's definitions leave open whether ``id_type=cio_id`` takes raw cio_ids (``3000001``)
    or ``cio_``-prefixed ones (``cio_3000001``), and the wrong guess is not an error: the answer
    just omits every id. So the form is found at run time: a chunk that comes back missing most
    of its People is asked again, for the missing ones, in the other form; the form that answers
    is kept for the rest of the run (one INFO line names it). While no form is known yet, one
    chunk at a time probes, so a wrong first guess costs one request, not one per worker.

    People the search listed but neither form returns are counted (``unhydrated``): a few were
    deleted since the search, which is normal. A whole chunk of them, or more than
    `UNHYDRATED_TOLERANCE` of the run (`check_run`), is not: the run stops with one line.
    """

    def __init__(self, api: Sender, stats: RunStats, logger: logging.Logger) -> None:
        self.api = api
        self.stats = stats
        self.logger = logger
        self.form: CioIdForm | None = None
        self._probing = threading.Lock()  # held by the one chunk probing while no form is known
        self._settling = threading.Lock()

    def __call__(self, chunk: list[Identifier]) -> list[dict[str, Any]]:
        self.stats.count("listed", len(chunk))
        if self.form is None:
            with self._probing:
                if self.form is None:
                    return self._hydrate(chunk)
        return self._hydrate(chunk)

    def _hydrate(self, chunk: list[Identifier]) -> list[dict[str, Any]]:
        form = self.form or CIO_ID_FORMS[0]
        profiles = self._fetch(chunk, form)
        answered = form if profiles else None
        missing = [hit for hit in chunk if bare_cio_id(hit.cio_id) not in profiles]
        if len(missing) * 2 > len(chunk):  # most of the chunk: maybe the wrong form
            other = other_form(form)
            self.stats.count("form_retries")
            found = self._fetch(missing, other)
            if len(found) > len(profiles):
                answered = other
            profiles.update(found)
        if answered is not None:
            self._settle(answered)
        records = [
            person_record(hit, profiles[key])
            for hit in chunk
            if (key := bare_cio_id(hit.cio_id)) in profiles
        ]
        if unhydrated := len(chunk) - len(records):
            # Deleted between search and hydration (Customer.io omits unknown ids), or worse.
            self.stats.count("unhydrated", unhydrated)
        if not records and len(chunk) >= WHOLE_CHUNK_MINIMUM:
            raise UnhydratedPeopleError(whole_chunk_message(len(chunk)))
        return records

    def _fetch(self, chunk: list[Identifier], form: CioIdForm) -> dict[str, Mapping[str, Any]]:
        """The profiles Customer.io returns for ``chunk`` asked in ``form``, by bare cio_id."""
        response = self.api.send(
            "POST",
            "/customers/attributes",
            params={"id_type": "cio_id"},
            json={"ids": [in_form(hit.cio_id, form) for hit in chunk]},
        )
        profiles: dict[str, Mapping[str, Any]] = {}
        for item in response.json().get("customers") or []:
            customer = item.get("customer", item)
            if cio_id := _customer_cio_id(customer):
                profiles[bare_cio_id(cio_id)] = customer
        return profiles

    def _settle(self, form: CioIdForm) -> None:
        with self._settling:
            if self.form == form:
                return
            before, self.form = self.form, form
        if before is None:
            self.logger.info(
                "people: hydrating by cio_id in the %s form (like %s), the form this workspace "
                "answers",
                form,
                FORM_EXAMPLES[form],
            )
        else:
            self.logger.warning(
                "people: the attributes endpoint stopped answering cio_ids in the %s form; "
                "switched to the %s form (like %s)",
                before,
                form,
                FORM_EXAMPLES[form],
            )

    def check_run(self) -> None:
        """Stop the run when more listed People went unhydrated than deletions explain."""
        listed, unhydrated = self.stats["listed"], self.stats["unhydrated"]
        if unhydrated > UNHYDRATED_TOLERANCE * listed:
            raise UnhydratedPeopleError(run_share_message(unhydrated, listed))


def whole_chunk_message(size: int) -> str:
    return (
        f"Customer.io's attributes endpoint (POST /v1/customers/attributes?id_type=cio_id) "
        f"returned none of {size} People its search had just listed, asked by cio_id in both "
        f"forms ({FORM_EXAMPLES['raw']} and {FORM_EXAMPLES['prefixed']}); the run stops rather "
        f"than drop them: run the tap again, and if it happens again report it to Customer.io "
        f"support."
    )


def run_share_message(unhydrated: int, listed: int) -> str:
    return (
        f"{unhydrated} of the {listed} People Customer.io's search listed "
        f"({100 * unhydrated / listed:.1f}%, more than the {UNHYDRATED_TOLERANCE:.0%} that "
        f"deletions during a run explain) could not be read from POST "
        f"/v1/customers/attributes?id_type=cio_id in either cio_id form "
        f"({FORM_EXAMPLES['raw']} or {FORM_EXAMPLES['prefixed']}): run the tap again, and if it "
        f"happens again report it to Customer.io support."
    )
