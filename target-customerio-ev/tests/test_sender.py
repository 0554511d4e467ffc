"""The sender's tricky paths against a scripted server (httpx.MockTransport).

The same paths run against the real sandbox in test_pipelines.py; here the server's answers are
chosen exactly (a 400 that names no item, a given sequence of failures) to pin the algorithm down.
"""

from __future__ import annotations

import json
import logging
import threading

import httpx
import pytest
from target_customerio_ev.deadletter import DeadLetters
from target_customerio_ev.errors import DeliveryError
from target_customerio_ev.identify import Identifier, Write, message_id
from target_customerio_ev.pipelines import PipelinesSender
from target_customerio_ev.settings import Settings
from target_customerio_ev.stats import RunStats

LOG = logging.getLogger("test-sender")


def writes(n, bad=()):
    out = []
    for i in range(n):
        traits = {"EV_Status": "BAD" if i in bad else "Valid"}
        who = Identifier("id", str(i))
        out.append(Write(who, traits, message_id(who, traits), cio_id=f"c{i}"))
    return out


def sender(handler, tmp_path, **over):
    settings = Settings.from_config(
        {
            "pipelines_api_key": "k",
            "api_url": "http://127.0.0.1:9",
            "dead_letter_path": str(tmp_path / "dead.jsonl"),
            "max_backoff_seconds": 0.05,
            **over,
        }
    )
    stats = RunStats()
    s = PipelinesSender(
        settings,
        stats,
        DeadLetters(settings.dead_letter_path, LOG),
        LOG,
        transport=httpx.MockTransport(handler),
    )
    return s, stats


def test_bisect_isolates_bad_messages_when_the_error_names_none(tmp_path):
    landed, lock, calls = [], threading.Lock(), []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["batch"]
        with lock:
            calls.append(len(batch))
        if any(m["traits"]["EV_Status"] == "BAD" for m in batch):
            return httpx.Response(400, json={"meta": {"errors": ["validation failed"]}})
        with lock:
            landed.extend(m["userId"] for m in batch)
        return httpx.Response(200, json={})

    s, stats = sender(handler, tmp_path, max_batch_messages=64)
    s.send(writes(128, bad={5, 77}), "people")
    s.close()
    assert sorted(landed, key=int) == [str(i) for i in range(128) if i not in (5, 77)]
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(d["identifier"]["value"] for d in dead) == ["5", "77"]
    assert all("validation failed" in d["reason"] and d["stream"] == "people" for d in dead)
    assert stats["written"] == 126 and stats["dead_lettered"] == 2
    assert (
        len(calls) <= 2 + 2 * 2 * 6
    )  # two chunks, each bisected down to one message: O(log n) requests


def test_named_items_are_dropped_without_bisecting(tmp_path):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["batch"]
        calls.append(len(batch))
        bad = [
            f"batch[{i}]: traits must be an object"
            for i, m in enumerate(batch)
            if m["traits"]["EV_Status"] == "BAD"
        ]
        return (
            httpx.Response(400, json={"meta": {"errors": bad}})
            if bad
            else httpx.Response(200, json={})
        )

    s, stats = sender(handler, tmp_path)
    s.send(writes(300, bad={0, 150, 299}), "people")
    assert calls == [300, 297] and stats["written"] == 297 and stats["dead_lettered"] == 3


def test_retries_429_5xx_timeouts_and_drops_then_lands(tmp_path):
    script = [
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.Response(408),
        httpx.Response(200, json={}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    s, stats = sender(handler, tmp_path)
    s.send(writes(3), "people")
    assert stats["written"] == 3 and stats["retries"] == 5 and stats["requests"] == 6


def test_exhausted_retries_raise_one_line(tmp_path):
    s, stats = sender(lambda request: httpx.Response(500), tmp_path, max_retries=2)
    with pytest.raises(DeliveryError) as err:
        s.send(writes(3), "people")
    assert "after 2 retries (HTTP 500)" in str(err.value) and "\n" not in str(err.value)
    assert stats["written"] == 0 and stats["requests"] == 3
