"""The Track API fake over real sockets: region discovery, v1 identify, v2 batch with 207s."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from cio_sandbox import Sandbox


@pytest.fixture
def sb(sandbox_faults_reset: Sandbox) -> Sandbox:
    return sandbox_faults_reset


@pytest.fixture
def track(sb: Sandbox) -> requests.Session:
    with requests.Session() as session:
        session.auth = (sb.keys.track_site_id, sb.keys.track_api_key)
        yield session


def person_item(
    identifiers: dict[str, Any], attributes: dict[str, Any] | None = None, action: str = "identify"
) -> dict[str, Any]:
    return {
        "type": "person",
        "identifiers": identifiers,
        "action": action,
        "attributes": attributes if attributes is not None else {"EV_Status": "Valid"},
        "timestamp": 1767225600,
    }


def test_region_discovery_names_this_server(sb: Sandbox, track: requests.Session) -> None:
    r = track.get(f"{sb.track_url}/api/v1/accounts/region")
    assert r.json() == {"url": sb.track_url, "region": "us", "environment_id": 912346}


def test_bad_credentials_are_401_everywhere(sb: Sandbox) -> None:
    for auth in [(sb.keys.track_site_id, "wrong"), ("wrong", sb.keys.track_api_key), None]:
        assert requests.get(f"{sb.track_url}/api/v1/accounts/region", auth=auth).status_code == 401
        r = requests.post(
            f"{sb.track_url}/api/v2/batch", auth=auth, json={"batch": [person_item({"id": "1"})]}
        )
        assert r.status_code == 401
        r = requests.put(
            f"{sb.track_url}/api/v1/customers/100001", auth=auth, json={"EV_Status": "Valid"}
        )
        assert r.status_code == 401
    assert sb.obs.landed_copy() == {}


def test_v1_identify_upserts_and_update_only_never_creates(
    sb: Sandbox, track: requests.Session
) -> None:
    by_id = next(p for p in sb.world.iter_people() if p.id is not None)
    by_email = next(
        p for p in sb.world.iter_people() if p.id is None and p.email and "@" in p.email
    )
    cio = sb.world.person(9)
    url = f"{sb.track_url}/api/v1/customers"
    assert track.put(f"{url}/{by_id.id}", json={"EV_Status": "Valid", "_update": True}).json() == {}
    assert (
        track.put(f"{url}/{by_email.email.strip()}", json={"EV_Status": "Invalid"}).status_code
        == 200
    )
    assert track.put(f"{url}/cio_{cio.cio_id}", json={"EV_Status": "Unknown"}).status_code == 200
    assert track.put(f"{url}/ghost-1", json={"EV_Status": "Valid", "_update": True}).json() == {}
    assert track.put(f"{url}/ghost-2", json={"EV_Status": "Valid"}).status_code == 200
    assert track.put(f"{url}/ghost-3", data=b"[1]").status_code == 400
    assert sb.obs.landed_copy() == {
        by_id.cio_id: {"EV_Status": "Valid"},  # `_update` itself never lands
        by_email.cio_id: {"EV_Status": "Invalid"},
        cio.cio_id: {"EV_Status": "Unknown"},
        "new:ghost-2": {"EV_Status": "Valid"},
    }
    assert sum(sb.obs.writes.values()) == 4 and sb.obs.messages_seen == set()


def test_v2_batch_lands_good_items_and_answers_207_for_bad_ones(
    sb: Sandbox, track: requests.Session
) -> None:
    good_id, good_cio, good_email = sb.world.person(1), sb.world.person(2), sb.world.person(4)
    batch = [
        person_item({"id": good_id.id}),  # 0 lands
        person_item({}),  # 1 no identifier
        person_item({"id": "100005", "email": "a@b.example"}),  # 2 two identifiers
        person_item(
            {"cio_id": good_cio.cio_id}, {"EV_Status": "Invalid", "_update": True}
        ),  # 3 lands
        person_item({"id": "100006"}, {"pad": "x" * 33_000}),  # 4 too big
        person_item({"id": "100007"}, action="teleport"),  # 5 unknown action
        person_item({"email": good_email.email}, {"EV_Status": "Unknown"}),  # 6 lands
        person_item(
            {"id": "nobody-here"}, {"EV_Status": "Valid", "_update": True}
        ),  # 7 does nothing
        person_item({"id": "100008"}, action="event"),  # 8 accepted, lands nothing here
    ]
    r = track.post(f"{sb.track_url}/api/v2/batch", json={"batch": batch})
    assert r.status_code == 207
    errors = r.json()["errors"]
    assert [e["batch_index"] for e in errors] == [1, 2, 4, 5]
    assert all(set(e) == {"batch_index", "reason", "field", "message"} for e in errors)
    assert [e["field"] for e in errors] == ["identifiers", "identifiers", "", "action"]
    assert sb.obs.landed_copy() == {
        good_id.cio_id: {"EV_Status": "Valid"},
        good_cio.cio_id: {"EV_Status": "Invalid"},
        good_email.cio_id: {"EV_Status": "Unknown"},
    }


def test_v2_batch_all_good_is_200(sb: Sandbox, track: requests.Session) -> None:
    r = track.post(f"{sb.track_url}/api/v2/batch", json={"batch": [person_item({"id": "100010"})]})
    assert (r.status_code, r.json()) == (200, {})
    assert sb.obs.landed_copy() == {sb.world.person(10).cio_id: {"EV_Status": "Valid"}}


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        json.dumps({"items": []}).encode(),
        json.dumps(
            {"batch": [person_item({"id": "100011"}, {"pad": "y" * 30_000}) for _ in range(18)]}
        ).encode(),
    ],
)
def test_v2_whole_request_problems_are_400(
    sb: Sandbox, track: requests.Session, body: bytes
) -> None:
    r = track.post(
        f"{sb.track_url}/api/v2/batch", data=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    (error,) = r.json()["errors"]
    assert set(error) == {"reason", "field", "message"}
    assert sb.obs.landed_copy() == {}
    assert sb.obs.requests[("track", "POST /api/v2/batch")] == 1
