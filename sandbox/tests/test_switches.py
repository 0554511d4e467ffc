"""The switches for what Customer.io's published definitions leave open, and the live workspace.

Each switch of ``Faults`` named in sandbox/README.md's conformance table is driven here through real
sockets, with its default and every other value: the cio_id form hydration accepts, stable vs
live-offset cursors, email-only identifies, landing delay, lost writes, and whether a strict-mode
400 names the bad calls. ``Sandbox.add_people`` and ``delete_people`` change the workspace under
running searches.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cio_sandbox import Faults, Person, Sandbox
from cio_sandbox.world import normalize_address

STRICT = {"X-Strict-Mode": "1"}
EVERYONE = {"attribute": {"field": "cio_id", "operator": "exists"}}
UNVERIFIED = {"not": {"attribute": {"field": "EV_Status", "operator": "exists"}}}


@pytest.fixture
def sb(sandbox_faults_reset: Sandbox) -> Sandbox:
    sandbox_faults_reset.obs.faults.app_rate_limit = 0
    return sandbox_faults_reset


@pytest.fixture
def app(sb: Sandbox) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {sb.keys.app_api_key}"
        yield session


# --- helpers -------------------------------------------------------------------------------------
def search(
    sb: Sandbox, app: requests.Session, filt: object, limit: int, start: str = ""
) -> dict[str, Any]:
    r = app.post(
        f"{sb.app_api_url}/v1/customers",
        params={"limit": limit, "start": start},
        json={"filter": filt},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]  # requests types json() as Any


def page_through(
    sb: Sandbox, app: requests.Session, filt: object, limit: int, between: Any = None
) -> list[str]:
    """Every cio_id of a search, calling ``between(page_number, page)`` after each page."""
    seen: list[str] = []
    start, number = "", 0
    while True:
        page = search(sb, app, filt, limit, start)
        seen += [row["cio_id"] for row in page["identifiers"]]
        if between is not None:
            between(number, page)
        start, number = page["next"], number + 1
        if not start:
            return seen


def hydrate(sb: Sandbox, app: requests.Session, id_type: str, ids: list[str]) -> list[str]:
    r = app.post(
        f"{sb.app_api_url}/v1/customers/attributes", params={"id_type": id_type}, json={"ids": ids}
    )
    assert r.status_code == 200, r.text
    return [c["customer"]["identifiers"]["cio_id"] for c in r.json()["customers"]]


def get_one(sb: Sandbox, app: requests.Session, id_type: str, value: str) -> requests.Response:
    return app.get(f"{sb.app_api_url}/v1/customers/{value}/attributes", params={"id_type": id_type})


def identify(user_id: str | None, traits: dict[str, Any] | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {
        "type": "identify",
        "traits": traits or {"EV_Status": "Valid"},
        "messageId": str(uuid.uuid4()),
    }
    if user_id is not None:
        call["userId"] = user_id
    return call


def email_only(person: Person, status: str = "Valid") -> dict[str, Any]:
    assert person.email is not None
    return identify("", {"email": person.email, "EV_Status": status})


def batch(sb: Sandbox, calls: list[dict[str, Any]], *, strict: bool = True) -> requests.Response:
    return requests.post(
        f"{sb.pipelines_url}/v1/batch",
        json={"batch": calls},
        auth=(sb.keys.pipelines_api_key, ""),
        headers=STRICT if strict else {},
    )


def track_batch(sb: Sandbox, items: list[dict[str, Any]]) -> requests.Response:
    return requests.post(
        f"{sb.track_url}/api/v2/batch",
        json={"batch": items},
        auth=(sb.keys.track_site_id, sb.keys.track_api_key),
    )


def track_item(kind: str, value: str) -> dict[str, Any]:
    return {
        "type": "person",
        "identifiers": {kind: value},
        "action": "identify",
        "attributes": {"EV_Status": "Valid"},
    }


def with_id_and_email(sb: Sandbox, count: int, skip: int = 0) -> list[Person]:
    people = [
        p
        for p in sb.world.iter_people()
        if p.id is not None and p.email and f"{p.index}@" in normalize_address(p.email)
    ]
    return people[skip : skip + count]


# --- Faults: defaults and refused values ---------------------------------------------------------
def test_switch_defaults_and_refused_values() -> None:
    faults = Faults()
    assert (faults.app_cio_id_form, faults.app_cursor_mode) == ("raw", "stable")
    assert (faults.pipelines_email_only, faults.pipelines_strict_names_items) == ("accept", False)
    assert (faults.landing_delay_seconds, faults.lose_writes_for) == (0.0, None)
    for name, bad in [
        ("app_cio_id_form", "cio"),
        ("app_cursor_mode", "offset"),
        ("pipelines_email_only", "refuse"),
        ("lose_writes_for", "phone"),
    ]:
        with pytest.raises(ValueError, match=name):
            setattr(faults, name, bad)
    faults.lose_writes_for = "cio_id"
    faults.lose_writes_for = None


# --- app_cio_id_form -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("form", "raw_found", "prefixed_found"),
    [("raw", True, False), ("prefixed", False, True), ("both", True, True)],
)
def test_cio_id_form_of_hydration(
    sb: Sandbox, app: requests.Session, form: str, raw_found: bool, prefixed_found: bool
) -> None:
    sb.obs.faults.app_cio_id_form = form
    people = with_id_and_email(sb, 3)
    raw = [p.cio_id for p in people]
    prefixed = [f"cio_{c}" for c in raw]
    # The wrong form is an unknown id: left out of the answer, never an error.
    assert hydrate(sb, app, "cio_id", raw) == (raw if raw_found else [])
    assert hydrate(sb, app, "cio_id", prefixed) == (raw if prefixed_found else [])
    assert hydrate(sb, app, "cio_id", [raw[0], prefixed[1]]) == [
        c for c, found in ((raw[0], raw_found), (raw[1], prefixed_found)) if found
    ]
    r = get_one(sb, app, "cio_id", raw[0])
    assert r.status_code == (200 if raw_found else 404)
    r = get_one(sb, app, "cio_id", prefixed[0])
    assert r.status_code == (200 if prefixed_found else 404)
    if r.status_code == 404:
        assert r.json() == {
            "errors": [{"detail": "The customer_id does not exist.", "status": "404"}]
        }
    else:
        assert r.json()["customer"]["identifiers"]["cio_id"] == raw[0]
    # Other id types are not touched by the switch.
    assert people[0].id is not None
    assert hydrate(sb, app, "id", [people[0].id]) == [raw[0]]


# --- app_cursor_mode -----------------------------------------------------------------------------
def land_status(sb: Sandbox, cio_ids: list[str]) -> None:
    """Land EV_Status on these People, as a running target would."""
    assert batch(sb, [identify(f"cio_{c}") for c in cio_ids]).status_code == 200


def test_stable_cursor_ignores_people_leaving_the_result_set(
    sb: Sandbox, app: requests.Session
) -> None:
    everyone_unverified = page_through(sb, app, UNVERIFIED, limit=500)
    sb.obs.reset_counters()

    def verify_the_page(number: int, page: dict[str, Any]) -> None:
        land_status(sb, [row["cio_id"] for row in page["identifiers"]])

    seen = page_through(sb, app, UNVERIFIED, limit=100, between=verify_the_page)
    assert seen == everyone_unverified  # nothing skipped, nothing repeated
    # Every Person returned is now verified: the filter sees landed writes.
    assert search(sb, app, UNVERIFIED, limit=1000)["identifiers"] == []


def test_live_offset_cursor_skips_what_moves_under_it(sb: Sandbox, app: requests.Session) -> None:
    sb.obs.faults.app_cursor_mode = "live_offset"
    everyone_unverified = page_through(sb, app, UNVERIFIED, limit=500)
    assert len(everyone_unverified) > 250
    sb.obs.reset_counters()

    def verify_the_page(number: int, page: dict[str, Any]) -> None:
        land_status(sb, [row["cio_id"] for row in page["identifiers"]])

    seen = page_through(sb, app, UNVERIFIED, limit=100, between=verify_the_page)
    # Each verified page leaves the result set, so the next offset jumps over 100 unseen People:
    # page k holds the People at 200k to 200k + 100 of the result set as it was at the start.
    n = len(everyone_unverified)
    assert seen == [c for k in range(0, n, 200) for c in everyone_unverified[k : k + 100]]
    assert len(set(seen)) == len(seen) < len(everyone_unverified)


def test_live_offset_cursor_repeats_and_skips_on_deletes_and_adds(
    sb: Sandbox, app: requests.Session
) -> None:
    sb.obs.faults.app_cursor_mode = "live_offset"
    first = search(sb, app, EVERYONE, limit=10)
    assert [r["cio_id"] for r in first["identifiers"]] == [
        sb.world.person(i).cio_id for i in range(10)
    ]
    # Two People of the first page go: the second page starts two People later than it would.
    sb.delete_people([0, 1])
    second = search(sb, app, EVERYONE, limit=10, start=first["next"])
    assert [r["cio_id"] for r in second["identifiers"]] == [
        sb.world.person(i).cio_id for i in range(12, 22)
    ]
    # In stable mode the same deletion moves nothing.
    sb.world.reset_changes()
    sb.obs.faults.app_cursor_mode = "stable"
    first = search(sb, app, EVERYONE, limit=10)
    sb.delete_people([0, 1, 10])
    second = search(sb, app, EVERYONE, limit=10, start=first["next"])
    assert [r["cio_id"] for r in second["identifiers"]] == [
        sb.world.person(i).cio_id for i in range(11, 21)
    ]


def test_cursors_of_one_mode_are_refused_by_the_other(sb: Sandbox, app: requests.Session) -> None:
    stable = search(sb, app, EVERYONE, limit=10)["next"]
    sb.obs.faults.app_cursor_mode = "live_offset"
    live = search(sb, app, EVERYONE, limit=10)["next"]
    assert live != stable
    r = app.post(
        f"{sb.app_api_url}/v1/customers", params={"start": stable}, json={"filter": EVERYONE}
    )
    assert r.status_code == 400 and "start" in r.json()["errors"][0]["detail"]
    last = search(sb, app, EVERYONE, limit=1000, start="")
    while last["next"]:
        last = search(sb, app, EVERYONE, limit=1000, start=last["next"])
    assert last["next"] == "" and last["identifiers"]  # the last page ends the cursor


# --- add_people, delete_people -------------------------------------------------------------------
def test_added_people_appear_everywhere_at_once(sb: Sandbox, app: requests.Session) -> None:
    before = sb.world.people_count
    added = sb.add_people(30)
    assert [p.index for p in added] == list(range(before, before + 30))
    assert sb.world.live_count == before + 30
    for p in added:
        assert p.email is not None
        domain = normalize_address(p.email).rpartition("@")[2]
        assert sb.world.domains[domain].kind == "normal"
        assert sb.world.truth_for_address(p.email) == p.truth
        assert sb.world.mailbox_state(p.email) == p.mailbox
        assert not any(k.startswith("EV_") for k in p.attributes)
        assert abs(int(p.attributes["created_at"]) - time.time()) < 60
    more = sb.add_people(100)
    assert 0 < sum(p.id is None for p in more) < 30  # about 1 in 10 is email-only
    everyone = page_through(sb, app, EVERYONE, limit=1000)
    assert everyone[before : before + 30] == [p.cio_id for p in added]
    assert hydrate(sb, app, "cio_id", [p.cio_id for p in added]) == [p.cio_id for p in added]
    with_id = [p for p in added if p.id is not None]
    assert hydrate(sb, app, "id", [str(p.id) for p in with_id]) == [p.cio_id for p in with_id]
    findable = [p for p in added if p.email and f"{p.index}@" in normalize_address(p.email)]
    assert hydrate(sb, app, "email", [str(p.email) for p in findable]) == [
        p.cio_id for p in findable
    ]
    assert get_one(sb, app, "cio_id", added[0].cio_id).status_code == 200
    workspace = app.get(f"{sb.app_api_url}/v1/workspaces").json()["workspaces"][0]
    assert workspace["people"] == before + 130
    # Writes find them too: an identify lands on the added Person, not on a new one.
    assert batch(sb, [identify(f"cio_{added[0].cio_id}")]).status_code == 200
    assert list(sb.obs.landed_copy()) == [added[0].cio_id]


def test_deleted_people_disappear_from_searches_and_hydration(
    sb: Sandbox, app: requests.Session
) -> None:
    gone = with_id_and_email(sb, 3)
    sb.delete_people(gone)
    cio_ids = [p.cio_id for p in gone]
    assert not set(cio_ids) & set(page_through(sb, app, EVERYONE, limit=1000))
    survivor = with_id_and_email(sb, 1, skip=3)[0].cio_id
    assert hydrate(sb, app, "cio_id", [*cio_ids, survivor]) == [survivor]
    assert hydrate(sb, app, "id", [str(p.id) for p in gone]) == []
    assert hydrate(sb, app, "email", [str(p.email) for p in gone]) == []
    assert get_one(sb, app, "cio_id", cio_ids[0]).status_code == 404
    assert app.get(f"{sb.app_api_url}/v1/customers", params={"email": gone[0].email}).json() == {
        "results": []
    }
    members = app.get(f"{sb.app_api_url}/v1/segments/1/customer_count").json()["count"]
    assert members == sum(1 for p in sb.world.iter_people() if 1 in p.segments)
    # Their mailboxes outlive the profiles; an identify by id now creates a new Person (upsert).
    assert gone[0].email is not None
    assert sb.world.mailbox_state(gone[0].email) == gone[0].mailbox
    assert batch(sb, [identify(str(gone[0].id))]).status_code == 200
    assert list(sb.obs.landed_copy()) == [f"new:{gone[0].id}"]


def test_changes_are_thread_safe_and_reset_by_the_fixture(sb: Sandbox) -> None:
    before = sb.world.people_count
    results: list[list[Person]] = []
    lock = threading.Lock()

    def add() -> None:
        people = sb.add_people(25)
        with lock:
            results.append(people)

    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    indexes = sorted(p.index for people in results for p in people)
    assert indexes == list(range(before, before + 200))
    sb.world.reset_changes()
    assert sb.world.live_count == before == sum(1 for _ in sb.world.iter_people())


# --- pipelines_email_only ------------------------------------------------------------------------
def test_email_only_accept_lands_by_email(sb: Sandbox) -> None:
    (person,) = with_id_and_email(sb, 1)
    assert batch(sb, [email_only(person)]).status_code == 200
    assert list(sb.obs.landed_copy()) == [person.cio_id]
    assert sb.obs.identifies_lost == {}


def test_email_only_reject_is_a_bad_call(sb: Sandbox) -> None:
    sb.obs.faults.pipelines_email_only = "reject"
    a, b = with_id_and_email(sb, 2)
    assert a.id is not None
    r = batch(sb, [identify(a.id), email_only(b)])
    assert r.status_code == 400
    (error,) = r.json()["meta"]["errors"]
    assert error.startswith("batch: one or more calls failed validation (identify needs a userId")
    assert "batch[" not in error
    assert sb.obs.landed_copy() == {}
    # Permissive mode: 200, the email-only call dropped, the other one landed.
    r = batch(sb, [identify(a.id), email_only(b)], strict=False)
    assert (r.status_code, r.json()) == (200, {})
    assert list(sb.obs.landed_copy()) == [a.cio_id]
    assert sb.obs.dropped_calls == 1
    assert sb.obs.identifies_lost == {"pipelines_email_only:reject": 2}
    sb.obs.faults.pipelines_strict_names_items = True
    r = batch(sb, [identify(a.id), email_only(b)])
    (error,) = r.json()["meta"]["errors"]
    assert error.startswith("batch[1]: ")


def test_email_only_drop_answers_200_and_never_lands(sb: Sandbox) -> None:
    sb.obs.faults.pipelines_email_only = "drop"
    a, b = with_id_and_email(sb, 2)
    assert a.id is not None
    for strict in (True, False):
        r = batch(sb, [identify(a.id), email_only(b)], strict=strict)
        assert (r.status_code, r.json()) == (200, {})
    assert list(sb.obs.landed_copy()) == [a.cio_id]
    assert sb.obs.identifies_lost == {"pipelines_email_only:drop": 2}
    assert sb.obs.dropped_calls == 0  # not a bad call: silently never landed
    assert sb.obs.snapshot()["identifies_lost"] == {"pipelines_email_only:drop": 2}


# --- landing_delay_seconds -----------------------------------------------------------------------
def test_landing_delay_hides_writes_from_the_app_api(sb: Sandbox, app: requests.Session) -> None:
    sb.obs.faults.landing_delay_seconds = 0.6
    person = next(p for p in sb.world.iter_people() if "EV_Status" not in p.attributes)
    status = {"attribute": {"field": "EV_Status", "operator": "eq", "value": "Valid"}}
    this_one = {"attribute": {"field": "cio_id", "operator": "eq", "value": person.cio_id}}
    exact = {"and": [status, this_one]}
    assert batch(sb, [identify(f"cio_{person.cio_id}")]).status_code == 200
    assert sb.obs.landed_copy() == {person.cio_id: {"EV_Status": "Valid"}}  # landed at once
    shown = get_one(sb, app, "cio_id", person.cio_id).json()["customer"]["attributes"]
    assert "EV_Status" not in shown
    assert search(sb, app, exact, limit=10)["identifiers"] == []
    time.sleep(0.7)
    shown = get_one(sb, app, "cio_id", person.cio_id).json()["customer"]["attributes"]
    assert shown["EV_Status"] == "Valid"
    assert [r["cio_id"] for r in search(sb, app, exact, limit=10)["identifiers"]] == [person.cio_id]
    # A second write shows only once it is old enough; the first stays visible meanwhile.
    second = identify(f"cio_{person.cio_id}", {"EV_Status": "Invalid"})
    assert batch(sb, [second]).status_code == 200
    r = app.post(
        f"{sb.app_api_url}/v1/customers/attributes",
        params={"id_type": "cio_id"},
        json={"ids": [person.cio_id]},
    )
    assert r.json()["customers"][0]["customer"]["attributes"]["EV_Status"] == "Valid"
    time.sleep(0.7)
    shown = get_one(sb, app, "cio_id", person.cio_id).json()["customer"]["attributes"]
    assert shown["EV_Status"] == "Invalid"


# --- lose_writes_for -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["id", "email", "cio_id"])
def test_lose_writes_for_one_way_of_addressing(sb: Sandbox, kind: str) -> None:
    sb.obs.faults.lose_writes_for = kind
    by_id, by_email, by_cio, by_email_user_id = with_id_and_email(sb, 4)
    calls = [
        identify(by_id.id),
        email_only(by_email),
        identify(f"cio_{by_cio.cio_id}"),
        identify(by_email_user_id.email),  # an email-shaped userId addresses by email
    ]
    r = batch(sb, calls)
    assert (r.status_code, r.json()) == (200, {})
    kinds = {by_id.cio_id: "id", by_email.cio_id: "email", by_cio.cio_id: "cio_id"}
    kinds[by_email_user_id.cio_id] = "email"
    assert set(sb.obs.landed_copy()) == {c for c, k in kinds.items() if k != kind}
    lost = sum(1 for k in kinds.values() if k == kind)
    assert sb.obs.identifies_lost == {f"lose_writes_for:{kind}": lost}
    # Track: the identifier's kind decides; 200 as if it landed.
    sb.obs.reset_counters()
    assert by_id.id is not None and by_email.email is not None
    items = [
        track_item("id", by_id.id),
        track_item("email", by_email.email),
        track_item("cio_id", by_cio.cio_id),
    ]
    r = track_batch(sb, items)
    assert (r.status_code, r.json()) == (200, {})
    assert set(sb.obs.landed_copy()) == {p.cio_id for p in (by_id, by_email, by_cio)} - {
        c for c, k in kinds.items() if k == kind
    }
    assert sb.obs.identifies_lost == {f"lose_writes_for:{kind}": 1}


# --- strict-mode 400s and auth -------------------------------------------------------------------
def test_strict_400_names_no_call_unless_switched_on(sb: Sandbox) -> None:
    calls = [identify("100001"), identify("100002", traits={"EV_Status": "x"})]
    calls[1]["traits"] = ["not", "an", "object"]
    r = batch(sb, calls)
    assert r.status_code == 400
    # Why, but not which: the client must split the batch to find the bad call.
    assert r.json() == {
        "meta": {
            "errors": ["batch: one or more calls failed validation (traits must be an object)"]
        }
    }
    assert "batch[1]" in sb.obs.rejected[-1]["reason"]  # the sandbox still records which
    sb.obs.faults.pipelines_strict_names_items = True
    (error,) = batch(sb, calls).json()["meta"]["errors"]
    assert error.startswith("batch[1]: ")
    assert sb.obs.landed_copy() == {}


def test_injected_rejections_follow_the_naming_switch(sb: Sandbox) -> None:
    sb.obs.faults.pipelines_reject_ids = frozenset({"100002"})
    calls = [identify("100001"), identify("100002")]
    r = batch(sb, calls)
    assert r.status_code == 400
    assert r.json()["meta"]["errors"] == [
        "batch: one or more calls failed validation (rejected (fault injection))"
    ]
    sb.obs.faults.pipelines_strict_names_items = True
    assert batch(sb, calls).json()["meta"]["errors"] == ["batch[1]: rejected (fault injection)"]
    assert sb.obs.landed_copy() == {}


def test_pipelines_takes_basic_auth_only(sb: Sandbox) -> None:
    bearer = {"Authorization": f"Bearer {sb.keys.pipelines_api_key}"}
    body = {"batch": [identify("100001")]}
    r = requests.post(f"{sb.pipelines_url}/v1/batch", json=body, headers={**bearer, **STRICT})
    assert r.status_code == 401 and r.json()["meta"]["errors"]
    r = requests.post(f"{sb.pipelines_url}/v1/batch", json=body, headers=bearer)
    assert (r.status_code, r.json()) == (200, {})  # permissive: dropped silently
    assert sb.obs.landed_copy() == {} and sb.obs.dropped_calls == 1
    assert batch(sb, body["batch"]).status_code == 200  # Basic, key as user, blank password
    assert list(sb.obs.landed_copy()) == [sb.world.person(1).cio_id]
