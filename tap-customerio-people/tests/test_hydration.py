"""Hydration by cio_id: the form the workspace answers is found at run time, and People the search
listed but hydration cannot return are counted, tolerated up to 1 %, and fail the run beyond.

The vendor's definitions leave open whether ``POST /v1/customers/attributes?id_type=cio_id`` takes
``3000001`` or ``cio_3000001``; the wrong form is answered with an empty list, not an error. These
tests use a fake sender (the logic alone) and a tiny fake App API on loopback (the executable's exit
code and output); `test_sandbox_hydration.py` runs the same cases against the sandbox's switch.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from tap_customerio_people import errors
from tap_customerio_people.people import (
    UNHYDRATED_TOLERANCE,
    WHOLE_CHUNK_MINIMUM,
    Hydrator,
    Identifier,
    in_form,
)
from tap_customerio_people.pipeline import run_ahead
from tap_customerio_people.stats import RunStats

from .conftest import parse_singer, run_tap

EXECUTABLE = Path(sys.executable).parent / "tap-customerio-people"
LOGGER = logging.getLogger("tap-customerio-people")


def cio_ids(n: int, first: int = 0x3000000) -> list[str]:
    return [f"{first + k:x}" for k in range(n)]


def customer(cio_id: str, *, echo: str | None = None) -> dict[str, Any]:
    """A profile as the attributes endpoint returns it (``echo``: the cio_id it shows)."""
    shown = echo or cio_id
    return {
        "customer": {
            "id": None,
            "identifiers": {"cio_id": shown, "id": None, "email": None},
            "attributes": {"cio_id": shown, "created_at": "1700000000"},
            "unsubscribed": False,
        }
    }


def accepted(value: str, form: str, known: set[str]) -> str | None:
    """The cio_id ``value`` names when the workspace takes cio_ids in ``form``, else None.

    ``form``: "raw", "prefixed", "both", or anything else for a workspace that takes neither.
    """
    prefixed = value.startswith("cio_")
    bare = value.removeprefix("cio_")
    if bare not in known:
        return None
    takes = {"raw": (False,), "prefixed": (True,), "both": (False, True)}.get(form, ())
    return bare if prefixed in takes else None


# ------------------------------------------------------------------------------ a fake sender
class FakeAttributes:
    """A `Sender` that answers attribute requests the way a workspace taking ``form`` does."""

    def __init__(self, people: list[str], form: str, *, echo_prefixed: bool = False) -> None:
        self.known = set(people)
        self.form = form
        self.echo_prefixed = echo_prefixed
        self.asked: list[list[str]] = []
        self.lock = threading.Lock()

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        assert (method, path, kwargs["params"]) == (
            "POST",
            "/customers/attributes",
            {"id_type": "cio_id"},
        )
        ids = kwargs["json"]["ids"]
        with self.lock:
            self.asked.append(ids)
        found = [bare for v in ids if (bare := accepted(v, self.form, self.known))]
        body = {
            "customers": [
                customer(b, echo=f"cio_{b}" if self.echo_prefixed else None) for b in found
            ]
        }
        return type("Response", (), {"json": lambda _self: body})()


def chunks_of(ids: list[str], size: int = 100) -> list[list[Identifier]]:
    hits = [Identifier(cio_id=c, id=None, email=None) for c in ids]
    return [hits[k : k + size] for k in range(0, len(hits), size)]


def hydrate_all(
    fake: FakeAttributes, listed: list[str], workers: int = 8
) -> tuple[list[dict[str, Any]], Hydrator]:
    hydrator = Hydrator(fake, RunStats(), LOGGER)  # type: ignore[arg-type]  # answers .json() only
    out = run_ahead(
        iter(chunks_of(listed)),
        hydrator,
        workers=workers,
        max_pending=workers,
        cancelled=threading.Event(),
    )
    return [record for records in out for record in records], hydrator


def form_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in caplog.messages if "hydrating by cio_id" in m]


@pytest.mark.parametrize(("form", "extra_requests"), [("raw", 0), ("prefixed", 1), ("both", 0)])
def test_the_form_the_workspace_answers_is_found_once_and_kept(
    form: str, extra_requests: int, caplog: pytest.LogCaptureFixture
) -> None:
    people = cio_ids(2000)
    fake = FakeAttributes(people, form)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        records, hydrator = hydrate_all(fake, people)
    assert [r["cio_id"] for r in records] == people  # none lost, search order kept
    assert len(fake.asked) == 20 + extra_requests  # a wrong first guess costs one request
    expected = "raw" if form == "both" else form
    assert hydrator.form == expected
    [line] = form_lines(caplog)
    assert f"the {expected} form" in line
    assert hydrator.stats["unhydrated"] == 0 and hydrator.stats["listed"] == 2000
    hydrator.check_run()


def test_profiles_that_echo_the_prefixed_cio_id_still_match() -> None:
    people = cio_ids(150)
    records, hydrator = hydrate_all(FakeAttributes(people, "prefixed", echo_prefixed=True), people)
    assert [r["cio_id"] for r in records] == people
    assert hydrator.form == "prefixed"


def test_in_form_never_doubles_the_prefix() -> None:
    assert in_form("3000001", "raw") == in_form("cio_3000001", "raw") == "3000001"
    assert in_form("3000001", "prefixed") == in_form("cio_3000001", "prefixed") == "cio_3000001"


def test_a_chunk_neither_form_returns_stops_the_run_in_one_line() -> None:
    people = cio_ids(300)
    fake = FakeAttributes(people, "neither")  # takes no form at all
    with pytest.raises(errors.UnhydratedPeopleError) as caught:
        hydrate_all(fake, people, workers=1)
    message = str(caught.value)
    assert "none of 100 People" in message and "3000001 and cio_3000001" in message
    assert "run the tap again" in message and errors.one_line(message) == message
    # The chunk, then the chunk again in the other form (a queued chunk may start meanwhile: the
    # real stream's requests stand down once the run is cancelled, this fake's do not).
    assert fake.asked[:2] == [people[:100], [f"cio_{c}" for c in people[:100]]]


def test_a_few_people_deleted_since_the_search_are_counted_not_fatal() -> None:
    people = cio_ids(1000)
    deleted = set(people[5::200])  # 5 of 1000: 0.5 %
    fake = FakeAttributes([c for c in people if c not in deleted], "prefixed")
    records, hydrator = hydrate_all(fake, people)
    assert [r["cio_id"] for r in records] == [c for c in people if c not in deleted]
    assert (hydrator.stats["unhydrated"], hydrator.stats["listed"]) == (5, 1000)
    assert hydrator.form == "prefixed"
    hydrator.check_run()  # within the 1 % tolerance


def test_more_than_one_percent_unhydrated_over_the_run_stops_it() -> None:
    people = cio_ids(1000)
    deleted = set(people[::90])  # 12 of 1000, never most of a chunk
    fake = FakeAttributes([c for c in people if c not in deleted], "raw")
    records, hydrator = hydrate_all(fake, people)
    assert len(records) == 988 and len(fake.asked) == 10  # no chunk looked like the wrong form
    with pytest.raises(errors.UnhydratedPeopleError) as caught:
        hydrator.check_run()
    message = str(caught.value)
    assert message.startswith("12 of the 1000 People") and "(1.2%, more than the 1%" in message
    assert errors.one_line(message) == message


def test_a_short_chunk_lost_whole_is_left_to_the_run_share() -> None:
    """A last chunk of a few People, all deleted meanwhile, is no evidence of a wrong form."""
    people = cio_ids(1000 + WHOLE_CHUNK_MINIMUM - 1)
    fake = FakeAttributes(people[:1000], "raw")
    records, hydrator = hydrate_all(fake, people)
    assert len(records) == 1000
    assert hydrator.stats["unhydrated"] == WHOLE_CHUNK_MINIMUM - 1
    assert WHOLE_CHUNK_MINIMUM - 1 < UNHYDRATED_TOLERANCE * 1009
    hydrator.check_run()


def test_mass_deletion_of_most_of_a_chunk_does_not_change_the_form() -> None:
    people = cio_ids(400)
    gone = set(people[100:170])  # 70 of the second chunk
    fake = FakeAttributes([c for c in people if c not in gone], "prefixed")
    records, hydrator = hydrate_all(fake, people, workers=1)
    assert len(records) == 330 and hydrator.form == "prefixed"
    assert len(fake.asked) == 4 + 2  # the first chunk's probe, the second chunk's retry
    assert fake.asked[3] == [c for c in people[100:170]]  # only the missing ones, raw


# ---------------------------------------------------------------------- a fake App API on loopback
class FakeAppApi(BaseHTTPRequestHandler):
    """Search pages of ``page`` People; hydration answers cio_ids in ``form`` only."""

    people: ClassVar[list[str]] = []
    form: ClassVar[str] = "raw"
    page: ClassVar[int] = 1000
    url: ClassVar[str] = ""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        url = urlsplit(self.path)
        if url.path == "/v1/customers/attributes":
            found = [b for v in body["ids"] if (b := accepted(v, self.form, set(self.people)))]
            answer: dict[str, Any] = {"customers": [customer(b) for b in found]}
        else:
            start = int(parse_qs(url.query).get("start", ["0"])[0])
            hits = self.people[start : start + self.page]
            end = start + len(hits)
            answer = {
                "identifiers": [{"cio_id": c, "id": None, "email": None} for c in hits],
                "ids": ["" for _ in hits],
                "next": str(end) if end < len(self.people) else "",
            }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # segments and suppressions: none
        data = json.dumps({"segments": [], "suppressions": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[type[FakeAppApi]]:
    handler = type("Handler", (FakeAppApi,), {"people": cio_ids(500), "form": "raw"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()
    server.server_close()


def test_in_process_run_detects_the_prefixed_form(fake_api: Any) -> None:
    fake_api.form = "prefixed"
    run = run_tap({"app_api_key": "k", "api_url": fake_api.url, "requests_per_second": 200})
    assert [r["cio_id"] for r in run.people] == fake_api.people


def test_the_executable_exits_1_with_one_line_and_no_further_state(
    fake_api: Any, tmp_path: Path
) -> None:
    fake_api.form = "neither"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"app_api_key": "k", "api_url": fake_api.url, "requests_per_second": 200})
    )
    done = subprocess.run(
        [str(EXECUTABLE), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if "none of 100 People" in x]
    assert "ERROR" in line and "run the tap again" in line
    messages, records = parse_singer(done.stdout)
    assert records["people"] == []
    kinds = [(m["type"], m.get("stream")) for m in messages]
    people_from = kinds.index(("SCHEMA", "people"))
    assert all(kind != "STATE" for kind, _ in kinds[people_from:])
