"""The Pipelines (CDP) fake over real sockets: permissive vs strict, limits, identify, faults."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests
from cio_sandbox import Sandbox
from cio_sandbox.http_faults import SlidingWindowLimiter
from customerio import analytics

STRICT = {"X-Strict-Mode": "1"}


@pytest.fixture
def sb(sandbox_faults_reset: Sandbox) -> Sandbox:
    return sandbox_faults_reset


def post(
    sb: Sandbox,
    call: str,
    body: Any,
    *,
    strict: bool = False,
    key: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{sb.pipelines_url}/v1/{call}",
        data=data,
        auth=(key or sb.keys.pipelines_api_key, ""),
        headers={"Content-Type": "application/json", **(STRICT if strict else {})},
        **kwargs,
    )


def identify(user_id: Any = None, traits: dict | None = None, **extra: Any) -> dict[str, Any]:
    message = {
        "type": "identify",
        "traits": traits or {"EV_Status": "Valid"},
        "messageId": str(uuid.uuid4()),
    }
    if user_id is not None:
        message["userId"] = user_id
    return {**message, **extra}


def person_with(sb: Sandbox, keep) -> Any:
    return next(p for p in sb.world.iter_people() if keep(p))


# --- identify resolution -------------------------------------------------------------------------
def test_identify_resolves_id_cio_id_email_and_creates_the_unknown(sb: Sandbox) -> None:
    by_id = person_with(sb, lambda p: p.id is not None)
    by_cio = sb.world.person(7)
    by_email = person_with(sb, lambda p: p.id is None and p.email and p.email.strip() != p.email)
    email_only = person_with(sb, lambda p: p.id is None and p.email and p.index > by_email.index)
    batch = [
        identify(by_id.id, {"EV_Status": "Valid", "EV_Validation_Timestamp": 1767225600}),
        identify(f"cio_{by_cio.cio_id}", {"EV_Status": "Invalid"}),
        identify(by_email.email.strip().upper(), {"EV_Status": "Unknown"}),
        identify("", {"email": email_only.email, "EV_Status": "Catch-All"}),
        identify("someone-new", {"EV_Status": "Disposable"}),
        identify(anonymousId="anon-1", traits={"EV_Status": "Unknown"}),
    ]
    assert post(sb, "batch", {"batch": batch}, strict=True).json() == {}
    landed = sb.obs.landed_copy()
    assert landed == {
        by_id.cio_id: {
            "EV_Status": "Valid",
            "EV_Validation_Timestamp": 1767225600,
        },  # values kept as sent
        by_cio.cio_id: {"EV_Status": "Invalid"},
        by_email.cio_id: {"EV_Status": "Unknown"},
        email_only.cio_id: {"email": email_only.email, "EV_Status": "Catch-All"},
        "new:someone-new": {"EV_Status": "Disposable"},
        "new:anon-1": {"EV_Status": "Unknown"},
    }


def test_single_identify_endpoint_and_no_op_calls(sb: Sandbox) -> None:
    p = person_with(sb, lambda p: p.id is not None)
    message = identify(p.id)
    del message["type"]  # the endpoint says what it is
    assert post(sb, "identify", message, strict=True).json() == {}
    for call in ("track", "page", "screen", "group", "alias"):
        r = post(
            sb,
            call,
            {"userId": p.id, "event": "Verified", "messageId": str(uuid.uuid4())},
            strict=True,
        )
        assert (r.status_code, r.json()) == (200, {})
    assert sb.obs.landed_copy() == {p.cio_id: {"EV_Status": "Valid"}}
    assert sb.obs.requests[("pipelines", "POST /v1/identify")] == 1
    assert sb.obs.requests[("pipelines", "POST /v1/track")] == 1


def test_message_id_dedupes_replays(sb: Sandbox) -> None:
    p = sb.world.person(3)
    message = identify(f"cio_{p.cio_id}", messageId="fixed-1")
    for _ in range(3):
        assert post(sb, "batch", {"batch": [message]}, strict=True).status_code == 200
    assert sb.obs.writes[p.cio_id] == 1
    assert post(sb, "batch", {"batch": [{**message, "messageId": "fixed-2"}]}).status_code == 200
    assert sb.obs.writes[p.cio_id] == 2


# --- permissive vs strict ------------------------------------------------------------------------
def test_permissive_mode_answers_200_and_drops_silently(sb: Sandbox) -> None:
    good = {"batch": [identify("100001")]}
    for response in (
        post(sb, "batch", good, key="wrong-key"),
        post(sb, "batch", b"{not json"),
        post(sb, "batch", {"batch": "nope"}),
        post(sb, "batch", {"batch": [identify("100001", {"blob": "x" * 520_000})]}),
    ):
        assert (response.status_code, response.json()) == (200, {})
    assert (
        requests.post(f"{sb.pipelines_url}/v1/batch", json=good).status_code == 200
    )  # no auth at all
    assert sb.obs.dropped_calls == 5
    assert sb.obs.landed_copy() == {}
    assert not [r for r in sb.obs.rejected if r["strict"]]


def test_strict_mode_refuses_bad_keys_with_401(sb: Sandbox) -> None:
    good = {"batch": [identify("100001")]}
    r = post(sb, "batch", good, strict=True, key="wrong-key")
    assert r.status_code == 401 and r.json()["meta"]["errors"]
    r = requests.post(f"{sb.pipelines_url}/v1/batch", json=good, headers=STRICT)
    assert r.status_code == 401
    assert sb.obs.landed_copy() == {} and sb.obs.dropped_calls == 0
    assert len([r for r in sb.obs.rejected if r["strict"]]) == 2


def test_strict_mode_rejects_the_whole_batch_and_names_the_items(sb: Sandbox) -> None:
    sb.obs.faults.pipelines_strict_names_items = True
    batch = [identify(str(100000 + i)) for i in range(6)]
    batch[3] = {k: v for k, v in batch[3].items() if k != "type"}
    batch[5] = identify(None, {"EV_Status": "Valid"})  # no userId, no anonymousId, no email
    r = post(sb, "batch", {"batch": batch}, strict=True)
    assert r.status_code == 400
    errors = r.json()["meta"]["errors"]
    assert [e.split(":")[0] for e in errors] == ["batch[3]", "batch[5]"]
    assert sb.obs.landed_copy() == {}, "a rejected batch lands nothing"
    # The same batch in permissive mode lands the good items and drops the bad ones.
    assert post(sb, "batch", {"batch": batch}).status_code == 200
    assert len(sb.obs.landed_copy()) == 4 and sb.obs.dropped_calls == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (json.dumps({"batch": {"type": "identify"}}).encode(), "batch"),
        (json.dumps({"batch": [identify("1", type="purchase")]}).encode(), "batch[0]"),
        (json.dumps({"batch": [identify("1", traits=["EV_Status"])]}).encode(), "batch[0]"),
    ],
)
def test_strict_mode_refuses_malformed_requests(sb: Sandbox, body: bytes, reason: str) -> None:
    sb.obs.faults.pipelines_strict_names_items = True
    r = post(sb, "batch", body, strict=True)
    assert r.status_code == 400
    assert reason in r.json()["meta"]["errors"][0]


def test_size_limits_32kb_per_call_and_500kb_per_request(sb: Sandbox) -> None:
    def sized(n: int, user_id: str = "100001") -> dict[str, Any]:
        message = identify(user_id, {"EV_Status": "Valid", "pad": ""}, messageId=f"m-{n}")
        overhead = len(json.dumps(message, separators=(",", ":")).encode())
        message["traits"]["pad"] = "x" * (n - overhead)
        return message

    sb.obs.faults.pipelines_strict_names_items = True
    at_limit, over = sized(32768), sized(32769, "100002")
    r = post(sb, "batch", {"batch": [at_limit, identify("100003"), over]}, strict=True)
    assert r.status_code == 400
    (error,) = r.json()["meta"]["errors"]
    assert error.startswith("batch[2]:") and "32 KB" in error
    assert (
        post(sb, "batch", {"batch": [at_limit, identify("100003")]}, strict=True).status_code == 200
    )
    # A single call over 32 KB.
    r = post(sb, "identify", sized(33000, "100004"), strict=True)
    assert r.status_code == 400 and "32 KB" in r.json()["meta"]["errors"][0]
    # 16 calls of 32 KB each are fine one by one but over 500 KB together.
    big = [sized(32000, str(100010 + k)) for k in range(16)]
    r = post(sb, "batch", {"batch": big}, strict=True)
    assert r.status_code == 400 and "500 KB" in r.json()["meta"]["errors"][0]
    assert set(sb.obs.landed_copy()) == {sb.world.person(1).cio_id, sb.world.person(3).cio_id}


# --- faults and limits ---------------------------------------------------------------------------
def test_injected_faults(sb: Sandbox) -> None:
    body = {"batch": [identify("100001")]}
    faults = sb.obs.faults
    faults.pipelines_error_rate = 1.0
    assert post(sb, "batch", body, strict=True).status_code == 500
    faults.pipelines_error_rate = 0.0
    faults.storm("pipelines", 0.4)
    r = post(sb, "batch", body, strict=True)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    time.sleep(0.5)
    faults.pipelines_drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        post(sb, "batch", body)
    faults.pipelines_drop_rate = 0.0
    faults.pipelines_timeout_rate, faults.pipelines_timeout_seconds = 1.0, 1.0
    with pytest.raises(requests.Timeout):  # a no-op call: the hung request goes on after the test
        post(sb, "track", {"userId": "100001", "event": "x"}, timeout=0.3)
    faults.pipelines_timeout_rate = 0.0
    faults.pipelines_latency = 0.2
    began = time.monotonic()
    assert post(sb, "batch", {"batch": [identify("100002")]}).status_code == 200
    assert time.monotonic() - began >= 0.2
    assert sb.obs.rate_limited["pipelines"] == 1
    assert {
        k: sb.obs.faults_injected[k]
        for k in (
            "pipelines_error",
            "pipelines_429_storm",
            "pipelines_drop",
            "pipelines_timeout",
            "pipelines_latency",
        )
    } == dict.fromkeys(
        (
            "pipelines_error",
            "pipelines_429_storm",
            "pipelines_drop",
            "pipelines_timeout",
            "pipelines_latency",
        ),
        1,
    )
    assert sb.world.person(2).cio_id in sb.obs.landed_copy()


def test_sliding_window_limiter_counts_the_last_period() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(clock=lambda: now[0])
    assert [limiter.allow("k", 3, 3.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("other", 3, 3.0)
    now[0] = 2.9
    assert not limiter.allow("k", 3, 3.0)
    now[0] = 3.0
    assert limiter.allow("k", 3, 3.0)


# --- the official client -------------------------------------------------------------------------
def test_the_official_cdp_client_identify_lands(sb: Sandbox) -> None:
    p = person_with(sb, lambda p: p.id is not None)
    settings = ("write_key", "host", "sync_mode", "on_error", "default_client")
    saved = {name: getattr(analytics, name) for name in settings}
    errors: list[Exception] = []
    analytics.write_key = sb.keys.pipelines_api_key
    analytics.host = sb.pipelines_url
    analytics.sync_mode = True
    analytics.on_error = lambda error, batch: errors.append(error)
    analytics.default_client = None
    try:
        analytics.identify(p.id, {"EV_Status": "Valid", "EV_SubStatus": "mailbox_exists"})
    finally:
        for name, value in saved.items():
            setattr(analytics, name, value)
    assert errors == []
    assert sb.obs.landed_copy() == {
        p.cio_id: {"EV_Status": "Valid", "EV_SubStatus": "mailbox_exists"}
    }
    assert len(sb.obs.messages_seen) == 1  # the client's own messageId was recorded


def test_the_official_cdp_client_batches_with_gzip(sb: Sandbox) -> None:
    client = analytics.Client(
        sb.keys.pipelines_api_key, host=sb.pipelines_url, gzip=True, max_retries=0
    )
    people = [sb.world.person(i) for i in range(10, 40)]
    for p in people:
        client.identify(f"cio_{p.cio_id}", {"EV_Status": "Unknown"})
    client.flush()
    client.join()
    assert set(sb.obs.landed_copy()) == {p.cio_id for p in people}
    assert sb.obs.dropped_calls == 0
