"""Enumerate People with the search endpoint and hydrate them in batches of 100 cio_ids.

Search pages carry only identifiers; attributes come from
``POST /v1/customers/attributes?id_type=cio_id``. Hydrating by ``cio_id`` (never by ``id``) keeps
email-only People, whose ``id`` is null.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import UnexpectedResponseError
from .pagination import SearchCursor

if TYPE_CHECKING:
    import requests

    from .stats import RunStats

HYDRATION_BATCH = 100  # the attributes endpoint takes 1 to 100 ids
RECENT_PAGES = 3  # search pages whose ids are remembered to drop repeats
EVERYONE_FILTER = {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}


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


def search_filter(segment_ids: list[int]) -> dict[str, Any]:
    """Everybody, or the People of any of ``segment_ids`` (one search, segments OR-ed)."""
    if not segment_ids:
        return {"filter": EVERYONE_FILTER}
    return {"filter": {"or": [{"segment": {"id": sid}} for sid in segment_ids]}}


def _text(value: object) -> str | None:
    """Identifiers arrive as strings, numbers, null or ``""``; ``""`` means absent."""
    if value is None:
        return None
    text = str(value)
    return text or None


@dataclass(frozen=True)
class Identifier:
    """One search hit: the ids of a Person, before hydration."""

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


def _customer_cio_id(customer: Mapping[str, Any]) -> str | None:
    return _text((customer.get("identifiers") or {}).get("cio_id")) or _text(
        (customer.get("attributes") or {}).get("cio_id")
    )


class PeopleSearch:
    """Walks the search cursor and hands out chunks of new identifiers, ready for hydration."""

    def __init__(self, api: Sender, body: dict[str, Any], page_size: int) -> None:
        self.api = api
        self.body = body
        self.page_size = page_size
        self.cursor = SearchCursor()
        # Pages that overlap (a Person moving while the cursor walks) repeat a few ids across
        # neighbouring pages; remembering the last pages only keeps memory flat for any workspace
        # size. A repeat farther apart would be harmless downstream (same verdict, same messageId).
        self.recent_pages: deque[set[str]] = deque(maxlen=RECENT_PAGES)
        self.duplicates = 0

    def chunks(self) -> Iterator[list[Identifier]]:
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
            fresh = []
            page_ids: set[str] = set()
            for hit in hits:
                if hit.cio_id in page_ids or any(hit.cio_id in ids for ids in self.recent_pages):
                    self.duplicates += 1
                    continue
                page_ids.add(hit.cio_id)
                fresh.append(hit)
            self.recent_pages.append(page_ids)
            for start in range(0, len(fresh), HYDRATION_BATCH):
                yield fresh[start : start + HYDRATION_BATCH]


class Hydrator:
    """Fetches the profiles of one chunk and returns its records in the chunk's order."""

    def __init__(self, api: Sender, stats: RunStats) -> None:
        self.api = api
        self.stats = stats

    def __call__(self, chunk: list[Identifier]) -> list[dict[str, Any]]:
        response = self.api.send(
            "POST",
            "/customers/attributes",
            params={"id_type": "cio_id"},
            json={"ids": [hit.cio_id for hit in chunk]},
        )
        profiles: dict[str, Mapping[str, Any]] = {}
        for item in response.json().get("customers") or []:
            customer = item.get("customer", item)
            if cio_id := _customer_cio_id(customer):
                profiles[cio_id] = customer
        records = [
            person_record(hit, profiles[hit.cio_id]) for hit in chunk if hit.cio_id in profiles
        ]
        if missing := len(chunk) - len(records):
            # Deleted between search and hydration: Customer.io omits unknown ids.
            self.stats.count("vanished", missing)
        return records
