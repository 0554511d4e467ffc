"""The App API fake over real sockets: search, cursors, attributes, segments, limits, faults."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator

import pytest
import requests
from cio_sandbox import Sandbox

EVERYONE = {"attribute": {"field": "cio_id", "operator": "exists"}}
UNAUTHORIZED = {
    "errors": [
        {
            "detail": "Unauthorized request. Make sure that you provided the right credentials.",
            "status": "401",
        }
    ]
}
RATE_LIMITED = re.compile(r"^rate limited to 10 requests per 1s \(reference [0-9a-f]+\)$")


@pytest.fixture
def sb(sandbox_faults_reset: Sandbox) -> Sandbox:
    """The shared sandbox without its 10 req/s limit, for tests about something else."""
    sandbox_faults_reset.obs.faults.app_rate_limit = 0
    return sandbox_faults_reset


@pytest.fixture
def api(sb: Sandbox) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {sb.keys.app_api_key}"
        yield session


def search(sb: Sandbox, api: requests.Session, filt: object, **params: object) -> requests.Response:
    return api.post(f"{sb.app_api_url}/v1/customers", params=params, json={"filter": filt})


def all_pages(sb: Sandbox, api: requests.Session, filt: object, limit: int = 1000) -> list[dict]:
    identifiers: list[dict] = []
    start = ""
    for _ in range(100):
        r = search(sb, api, filt, limit=limit, start=start)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["identifiers"]) == len(page["ids"]) <= limit
        identifiers += page["identifiers"]
        start = page["next"]
        if start == "":
            return identifiers
        assert page["identifiers"], "a page with a cursor must not be empty"
    raise AssertionError("cursor never ended")


def details(r: requests.Response) -> list[str]:
    """The details of an App API error answer, checking its envelope on the way."""
    body = r.json()
    assert set(body) == {"errors"}, body  # the App API's envelope, never Track's "meta"
    assert all(e["status"] == str(r.status_code) for e in body["errors"])
    return [e["detail"] for e in body["errors"]]


def cio_ids_where(sb: Sandbox, keep) -> set[str]:
    return {p.cio_id for p in sb.world.iter_people() if keep(p)}


# --- search --------------------------------------------------------------------------------------
def test_paging_the_whole_world_returns_every_cio_id_exactly_once(
    sb: Sandbox, api: requests.Session
) -> None:
    found = all_pages(sb, api, EVERYONE)
    cio_ids = [row["cio_id"] for row in found]
    assert len(cio_ids) == sb.world.people_count == 3000
    assert set(cio_ids) == cio_ids_where(sb, lambda p: True)
    assert (
        sb.obs.requests[("app", "POST /v1/customers")] == 3
    )  # 3 full pages, the last one ends the cursor


def test_search_answers_json_without_rate_limit_headers(sb: Sandbox, api: requests.Session) -> None:
    r = search(sb, api, EVERYONE)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert not [h for h in r.headers if "ratelimit" in h.lower() or h.lower() == "retry-after"]
    page = r.json()
    assert len(page["identifiers"]) == 50  # the default limit
    first = sb.world.person(0)
    assert page["identifiers"][0] == {"id": first.id, "email": first.email, "cio_id": first.cio_id}
    assert isinstance(page["next"], str) and page["next"]


def test_email_only_people_have_an_empty_string_in_ids(sb: Sandbox, api: requests.Session) -> None:
    email_only = next(p for p in sb.world.iter_people() if p.id is None and p.email is not None)
    page = search(sb, api, EVERYONE, limit=email_only.index + 1).json()
    assert page["identifiers"][-1] == {
        "id": None,
        "email": email_only.email,
        "cio_id": email_only.cio_id,
    }
    assert page["ids"][-1] == ""
    assert all(isinstance(i, str) for i in page["ids"])


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "ten"])
def test_limit_out_of_range_is_400(sb: Sandbox, api: requests.Session, limit: str) -> None:
    r = search(sb, api, EVERYONE, limit=limit)
    assert r.status_code == 400
    assert details(r)[0].startswith("limit")


def test_garbage_and_tampered_cursors_are_400(sb: Sandbox, api: requests.Session) -> None:
    cursor = search(sb, api, EVERYONE, limit=10).json()["next"]
    assert search(sb, api, EVERYONE, limit=10, start=cursor).status_code == 200
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    index, mac = raw.split(".")
    tampered = base64.urlsafe_b64encode(f"{int(index) + 500}.{mac}".encode()).decode().rstrip("=")
    for bad in ("garbage!!", "MTAw", tampered, cursor[:-2]):
        r = search(sb, api, EVERYONE, limit=10, start=bad)
        assert r.status_code == 400, bad
        assert "start" in details(r)[0]


def test_segment_filters_with_and_or_not(sb: Sandbox, api: requests.Session) -> None:
    seg = {k: {"segment": {"id": k}} for k in (1, 2, 3)}
    cases = [
        (seg[1], lambda p: 1 in p.segments),
        ({"and": [seg[1], seg[3]]}, lambda p: 1 in p.segments and 3 in p.segments),
        ({"or": [seg[2], seg[3]]}, lambda p: 2 in p.segments or 3 in p.segments),
        ({"not": seg[1]}, lambda p: 1 not in p.segments),
        (
            {"and": [{"or": [seg[1], seg[2]]}, {"not": seg[3]}]},
            lambda p: (1 in p.segments or 2 in p.segments) and 3 not in p.segments,
        ),
        ({"segment": {"id": 5}}, lambda p: False),
    ]
    for filt, keep in cases:
        found = [row["cio_id"] for row in all_pages(sb, api, filt, limit=700)]
        assert len(found) == len(set(found)), filt
        assert set(found) == cio_ids_where(sb, keep), filt


def test_attribute_filters_read_the_people_attributes(sb: Sandbox, api: requests.Session) -> None:
    by_id = all_pages(sb, api, {"attribute": {"field": "id", "operator": "exists"}})
    assert {r["cio_id"] for r in by_id} == cio_ids_where(sb, lambda p: p.id is not None)
    assert all(r["id"] is not None for r in by_id)
    pro = all_pages(
        sb,
        api,
        {
            "and": [
                {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
                {"attribute": {"field": "EV_Status", "operator": "exists"}},
            ]
        },
    )
    assert {r["cio_id"] for r in pro} == cio_ids_where(
        sb, lambda p: p.attributes["plan"] == "pro" and "EV_Status" in p.attributes
    )
    one = sb.world.person(42)
    exact = all_pages(
        sb, api, {"attribute": {"field": "cio_id", "operator": "eq", "value": one.cio_id}}
    )
    assert exact == [{"id": one.id, "email": one.email, "cio_id": one.cio_id}]


def test_eq_takes_booleans_and_numbers_as_their_stored_strings(
    sb: Sandbox, api: requests.Session
) -> None:
    """The vendor's examples send ``"value": true``; attributes are stored as strings."""
    unsubscribed = sb.world.person(0)
    flagged = [sb.world.person(i) for i in (5, 9)]
    for p in flagged:
        sb.obs.land(p.cio_id, {"vip": True, "score": 7, "ratio": 0.5}, None)
    sb.obs.land(unsubscribed.cio_id, {"vip": False, "score": "7"}, None)
    want = {p.cio_id for p in flagged}

    def where(value: object, field: str = "vip") -> set[str]:
        filt = {"attribute": {"field": field, "operator": "eq", "value": value}}
        return {r["cio_id"] for r in all_pages(sb, api, filt)}

    assert where(True) == where("true") == want
    assert where(False) == where("false") == {unsubscribed.cio_id}
    assert where(7, "score") == where("7", "score") == want | {unsubscribed.cio_id}
    assert where(0.5, "ratio") == want
    for value in (None, [], {"a": 1}):
        r = search(sb, api, {"attribute": {"field": "vip", "operator": "eq", "value": value}})
        assert r.status_code == 400 and "value" in details(r)[0]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"filter": {}},
        {"filter": {"segment": {"id": 1}, "attribute": {"field": "x", "operator": "exists"}}},
        {"filter": {"attribute": {"field": "plan", "operator": "contains", "value": "p"}}},
        {"filter": {"and": []}},
        {"filter": {"or": {"segment": {"id": 1}}}},
        {"filter": {"segment": {}}},
        {"filter": {"everyone": True}},
        {"filter": {"not": [{"segment": {"id": 1}}]}},
    ],
)
def test_bad_filters_are_400_with_errors_details(
    sb: Sandbox, api: requests.Session, body: dict
) -> None:
    r = api.post(f"{sb.app_api_url}/v1/customers", json=body)
    assert r.status_code == 400
    assert details(r) and all(isinstance(e, str) and e for e in details(r))


# --- attributes ----------------------------------------------------------------------------------
def test_attribute_batches_of_1_to_100_ids(sb: Sandbox, api: requests.Session) -> None:
    url = f"{sb.app_api_url}/v1/customers/attributes"
    people = [sb.world.person(i) for i in range(100)]
    r = api.post(url, params={"id_type": "cio_id"}, json={"ids": [p.cio_id for p in people]})
    assert r.status_code == 200
    customers = [c["customer"] for c in r.json()["customers"]]
    assert [c["identifiers"]["cio_id"] for c in customers] == [p.cio_id for p in people]
    for c, p in zip(customers, people, strict=True):
        assert c["attributes"] == p.attributes
        assert all(isinstance(v, str) for v in c["attributes"].values())
        assert c["identifiers"] == {"email": p.email, "id": p.id, "cio_id": p.cio_id}
        assert c["unsubscribed"] is p.unsubscribed and c["devices"] == []
        assert c["timestamps"]["cio_id"] == int(p.attributes["created_at"])
    assert api.post(url, params={"id_type": "cio_id"}, json={"ids": ["x"] * 101}).status_code == 400
    assert api.post(url, params={"id_type": "cio_id"}, json={"ids": []}).status_code == 400
    assert api.post(url, params={"id_type": "phone_no"}, json={"ids": ["1"]}).status_code == 400
    assert api.post(url, params={"id_type": "cio_id"}, data=b"{not json").status_code == 400


def test_attribute_batches_by_id_and_email_omit_unknown_ids(
    sb: Sandbox, api: requests.Session
) -> None:
    url = f"{sb.app_api_url}/v1/customers/attributes"
    with_id = next(p for p in sb.world.iter_people() if p.id is not None)
    r = api.post(url, params={"id_type": "id"}, json={"ids": ["nobody", with_id.id, "999999999"]})
    assert [c["customer"]["id"] for c in r.json()["customers"]] == [with_id.id]
    with_email = next(
        p for p in sb.world.iter_people() if p.email and "@" in p.email and p.id is None
    )
    r = api.post(
        url,
        params={"id_type": "email"},
        json={"ids": [with_email.email.strip().upper(), "ghost@nowhere.example"]},
    )
    assert [c["customer"]["identifiers"]["cio_id"] for c in r.json()["customers"]] == [
        with_email.cio_id
    ]


def test_single_person_attributes_and_email_lookup(sb: Sandbox, api: requests.Session) -> None:
    p = next(p for p in sb.world.iter_people() if p.id is not None and p.email and "@" in p.email)
    r = api.get(
        f"{sb.app_api_url}/v1/customers/{p.cio_id}/attributes", params={"id_type": "cio_id"}
    )
    assert r.status_code == 200 and r.json()["customer"]["attributes"] == p.attributes
    r = api.get(f"{sb.app_api_url}/v1/customers/{p.id}/attributes")  # id_type defaults to id
    assert r.json()["customer"]["identifiers"]["cio_id"] == p.cio_id
    r = api.get(f"{sb.app_api_url}/v1/customers/nobody/attributes", params={"id_type": "id"})
    assert r.status_code == 404
    r = api.get(f"{sb.app_api_url}/v1/customers", params={"email": p.email.strip().upper()})
    assert r.json() == {"results": [{"email": p.email, "id": p.id, "cio_id": p.cio_id}]}
    r = api.get(f"{sb.app_api_url}/v1/customers", params={"email": "ghost@nowhere.example"})
    assert r.json() == {"results": []}


# --- segments, suppressions ----------------------------------------------------------------------
def test_segments_count_and_membership(sb: Sandbox, api: requests.Session) -> None:
    base = sb.app_api_url
    assert api.get(f"{base}/v1/segments").json() == {"segments": sb.world.segments}
    assert api.get(f"{base}/v1/segments/4").json()["segment"]["state"] == "build"
    r = api.get(f"{base}/v1/segments/99")
    assert r.status_code == 404
    assert r.json() == {"errors": [{"detail": "segment not found", "status": "404"}]}
    members = cio_ids_where(sb, lambda p: 3 in p.segments)
    assert api.get(f"{base}/v1/segments/3/customer_count").json() == {
        "count": len(members),
        "segment_id": 3,
    }
    seen: list[str] = []
    start = ""
    while True:
        page = api.get(
            f"{base}/v1/segments/3/membership", params={"limit": 300, "start": start}
        ).json()
        seen += [row["cio_id"] for row in page["identifiers"]]
        assert page["ids"] == [row["id"] or "" for row in page["identifiers"]]
        start = page["next"]
        if not start:
            break
    assert len(seen) == len(set(seen)) and set(seen) == members
    assert api.get(f"{base}/v1/segments/3/membership", params={"limit": 30001}).status_code == 400
    assert api.get(f"{base}/v1/segments/3/membership", params={"start": "bogus"}).status_code == 400


def test_suppressions_page_by_offset(sb: Sandbox, api: requests.Session) -> None:
    url = f"{sb.app_api_url}/v1/esp/suppression"
    every = sb.world.suppressions("bounces")
    first = api.get(f"{url}/bounces", params={"limit": 10}).json()
    assert first == {"category": "bounces", "suppressions": every[:10]}
    rest = api.get(f"{url}/bounces", params={"limit": 1000, "offset": 10}).json()["suppressions"]
    assert rest == every[10:]
    for kind in ("blocks", "spam_reports", "invalid_emails"):
        assert api.get(f"{url}/{kind}").json()["suppressions"] == sb.world.suppressions(kind)
    assert api.get(f"{url}/hard_bounces").status_code == 404
    assert api.get(f"{url}/bounces", params={"limit": 1001}).status_code == 400
    # An older definition names the categories bounces|blocks|spam|invalid: the same lists.
    for old, current in (("spam", "spam_reports"), ("invalid", "invalid_emails")):
        answer = api.get(f"{url}/{old}").json()
        assert answer == {"category": old, "suppressions": sb.world.suppressions(current)}


def test_every_4xx_uses_the_errors_envelope(sb: Sandbox, api: requests.Session) -> None:
    base = sb.app_api_url
    answers = [
        api.get(f"{base}/v1/no-such-endpoint"),  # 404
        api.delete(f"{base}/v1/segments"),  # 405
        api.get(f"{base}/v1/segments/99"),  # 404
        api.get(f"{base}/v1/customers/nobody/attributes"),  # 404
        api.get(f"{base}/v1/customers"),  # 400: no email
        api.post(f"{base}/v1/customers", json={"filter": {}}),  # 400
        api.post(f"{base}/v1/customers/attributes", json={"ids": []}),  # 400
        requests.get(f"{base}/v1/segments"),  # 401
    ]
    assert [r.status_code for r in answers] == [404, 405, 404, 404, 400, 400, 400, 401]
    for r in answers:
        assert details(r) and all(details(r)), r.text


def test_workspaces(sb: Sandbox, api: requests.Session) -> None:
    assert api.get(f"{sb.app_api_url}/v1/workspaces").json() == {
        "workspaces": [
            {
                "id": "912346",
                "name": "Sandbox workspace",
                "messages_sent": 0,
                "billable_messages_sent": 0,
                "people": 3000,
                "object_types": 0,
                "objects": 0,
            }
        ]
    }


# --- credentials and limits ----------------------------------------------------------------------
def test_wrong_key_missing_key_and_other_region_are_401(sb: Sandbox, api: requests.Session) -> None:
    assert api.get(f"{sb.app_api_url}/v1/workspaces").status_code == 200
    r = api.get(f"{sb.app_api_url_other}/v1/workspaces")
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)
    r = requests.get(
        f"{sb.app_api_url}/v1/workspaces", headers={"Authorization": "Bearer sbx_wrong"}
    )
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)
    r = requests.get(
        f"{sb.app_api_url}/v1/workspaces", auth=(sb.keys.app_api_key, "")
    )  # Basic instead of Bearer
    assert r.status_code == 401
    assert requests.get(f"{sb.app_api_url}/v1/workspaces").status_code == 401


def test_ten_requests_per_second_then_429_with_retry_after(
    sb: Sandbox, api: requests.Session
) -> None:
    sb.obs.faults.app_rate_limit = 10
    url = f"{sb.app_api_url}/v1/segments"
    statuses = [api.get(url) for _ in range(14)]
    assert [r.status_code for r in statuses] == [200] * 10 + [429] * 4
    limited = statuses[-1]
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["Content-Type"] == "application/json; charset=utf-8"
    (error,) = limited.json()["errors"]
    assert error["status"] == "429" and RATE_LIMITED.match(error["detail"])
    assert sb.obs.rate_limited["app"] == 4
    # A window, not a refilling bucket: half a second later the last second still holds 10 requests.
    time.sleep(0.5)
    assert api.get(url).status_code == 429
    # The limit is per key and shared by both region servers.
    assert api.get(f"{sb.app_api_url_other}/v1/segments").status_code == 429
    time.sleep(0.6)
    assert api.get(url).status_code == 200
    sb.obs.faults.app_rate_limit = 0
    assert all(api.get(url).status_code == 200 for _ in range(15))


# --- faults --------------------------------------------------------------------------------------
def test_injected_errors_latency_stalls_drops_and_storms(
    sb: Sandbox, api: requests.Session
) -> None:
    url = f"{sb.app_api_url}/v1/workspaces"
    faults = sb.obs.faults
    faults.app_error_rate = 1.0
    r = api.get(url)
    assert r.status_code == 503 and r.json()["errors"][0]["status"] == "503"
    faults.app_error_rate = 0.0
    faults.app_drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        api.get(url)
    faults.app_drop_rate = 0.0
    faults.app_latency = 0.3
    began = time.monotonic()
    assert api.get(url).status_code == 200
    assert time.monotonic() - began >= 0.3
    faults.app_latency = 0.0
    faults.app_stall_rate, faults.app_stall_seconds = 1.0, 2.0
    with pytest.raises(requests.Timeout):
        api.get(url, timeout=0.4)
    faults.app_stall_rate = 0.0
    faults.storm("app", 0.5)
    r = api.get(url)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    time.sleep(0.6)
    assert api.get(url).status_code == 200
    injected = sb.obs.faults_injected
    assert {
        k: injected[k]
        for k in ("app_error", "app_drop", "app_latency", "app_stall", "app_429_storm")
    } == {"app_error": 1, "app_drop": 1, "app_latency": 1, "app_stall": 1, "app_429_storm": 1}
    assert sb.obs.requests[("app", "GET /v1/workspaces")] == 6


def test_fault_draws_repeat_for_the_same_seed(make_sandbox) -> None:
    runs = []
    for _ in range(2):
        sb = make_sandbox(seed=11, people=100)
        sb.obs.faults.app_rate_limit = 0
        sb.obs.faults.app_error_rate = 0.5
        headers = {"Authorization": f"Bearer {sb.keys.app_api_key}"}
        runs.append(
            [
                requests.get(f"{sb.app_api_url}/v1/segments", headers=headers).status_code
                for _ in range(24)
            ]
        )
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


def test_a_million_people_are_served_a_page_at_a_time(make_sandbox) -> None:
    sb = make_sandbox(seed=3, people=1_000_000)
    sb.obs.faults.app_rate_limit = 0
    with requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {sb.keys.app_api_key}"
        page = search(sb, api, EVERYONE, limit=1000).json()
        assert [r["cio_id"] for r in page["identifiers"]] == [
            sb.world.person(i).cio_id for i in range(1000)
        ]
        second = search(sb, api, EVERYONE, limit=1000, start=page["next"]).json()
        assert second["identifiers"][0]["cio_id"] == sb.world.person(1000).cio_id
        count = api.get(f"{sb.app_api_url}/v1/segments/1/customer_count").json()["count"]
        assert count == 333_334
        members = api.get(f"{sb.app_api_url}/v1/segments/2/membership", params={"limit": 5}).json()
        assert [r["cio_id"] for r in members["identifiers"]] == [
            sb.world.person(i).cio_id for i in (1, 6, 11, 16, 21)
        ]


def test_landed_traits_are_read_back_as_string_attributes(
    sb: Sandbox, api: requests.Session
) -> None:
    """What the Pipelines fake landed is what the next run's tap reads, stored as strings (as
    Customer.io stores them)."""
    person = sb.world.person(0)
    sb.obs.land(
        person.cio_id,
        {
            "EV_Status": "Valid",
            "EV_SubStatus": "mailbox_exists",
            "EV_Validation_Timestamp": 1790000000,
        },
        None,
    )
    r = api.post(
        f"{sb.app_api_url}/v1/customers/attributes",
        params={"id_type": "cio_id"},
        json={"ids": [person.cio_id]},
    )
    attributes = r.json()["customers"][0]["customer"]["attributes"]
    assert attributes["EV_Status"] == "Valid"
    assert attributes["EV_Validation_Timestamp"] == "1790000000"
    assert attributes["email"] == person.attributes["email"]
    sb.obs.reset_counters()
    r = api.get(
        f"{sb.app_api_url}/v1/customers/{person.cio_id}/attributes", params={"id_type": "cio_id"}
    )
    assert r.json()["customer"]["attributes"] == person.attributes
