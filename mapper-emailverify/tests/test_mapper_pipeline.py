"""The mapper's executable on Singer input, against the real engine and the sandbox's DNS and SMTP
servers.

Input is the tap's real output (tap-customerio-people against the sandbox App API) and hand-written
streams. Traffic is counted by the sandbox, never by the mapper.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
MAPPER = str(BIN / "mapper-emailverify")
TAP = str(BIN / "tap-customerio-people")
FIELDS = ("EV_Status", "EV_SubStatus", "EV_Validation_Timestamp")
LEGAL = {
    "Valid": {"role_based", "mailbox_exists"},
    "Invalid": {
        "invalid_syntax",
        "domain_not_found",
        "no_mx_record",
        "null_mx",
        "mailbox_not_found",
        "mailbox_disabled",
        "mailbox_full",
        "hard_bounce_history",
    },
    "Disposable": {"disposable_domain"},
    "Catch-All": {"catch_all"},
    "Unknown": {
        "smtp_timeout",
        "smtp_connection_failed",
        "greylisted",
        "smtp_blocked",
        "dns_error",
        "provider_unverifiable",
        "smtp_unavailable",
        "no_email",
    },
}


def mapper_config(sb, tmp_path: Path, **over: Any) -> Path:
    path = tmp_path / f"mapper-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(sb.mapper_config(smtp_timeout=2, dns_timeout=2, **over)))
    return path


def run_mapper(config: Path, lines: list[Any], timeout: float = 60) -> tuple[list[dict], str]:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    proc = subprocess.run(
        [MAPPER, "--config", str(config)],
        input=text,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def identity(message: dict) -> str:
    """A record as the tap wrote it (the mapper's fields removed)."""
    record = {k: v for k, v in message["record"].items() if k not in FIELDS}
    return f"{message['stream']}:{json.dumps(record, sort_keys=True)}"


def assert_state_barrier(inp: list[dict], out: list[dict]) -> int:
    """Every record read is written once, and every STATE after every record read before it
    (records read after a STATE may be written before it). Returns how many STATEs were
    overtaken."""

    def before_each_state(messages: list[dict]) -> tuple[list[Counter[str]], Counter[str]]:
        seen: Counter[str] = Counter()
        marks: list[Counter[str]] = []
        for m in messages:
            if m["type"] == "STATE":
                marks.append(Counter(seen))
            elif m["type"] == "RECORD":
                seen[identity(m)] += 1
        return marks, seen

    (want, all_in), (got, all_out) = before_each_state(inp), before_each_state(out)
    assert all_out == all_in
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert not (w - g), "a STATE was written before a record read ahead of it"
    return sum(1 for g, w in zip(got, want, strict=True) if g != w)


@pytest.fixture(scope="module")
def tap_world():
    """A small world served by its own sandbox, and the tap's real output for it."""
    from cio_sandbox import Sandbox, World

    with Sandbox(World(seed=11, people=150)) as sb:
        sb.obs.faults.app_rate_limit = 0
        cfg = Path(os.environ.get("TMPDIR", "/tmp")) / f"tap-{os.getpid()}.json"
        cfg.write_text(json.dumps(sb.tap_config()))
        proc = subprocess.run(
            [TAP, "--config", str(cfg)], capture_output=True, text=True, timeout=120
        )
        cfg.unlink()
        assert proc.returncode == 0, proc.stderr[-2000:]
        yield sb, [json.loads(line) for line in proc.stdout.splitlines()]


def test_tap_output_verified_in_order_then_cached_then_bounces(tap_world, tmp_path):
    sb, tap_lines = tap_world
    world = sb.world
    cache = tmp_path / "cache.sqlite"
    report = tmp_path / "report.json"
    config = mapper_config(sb, tmp_path, cache_path=str(cache), report_path=str(report))
    sb.obs.reset_counters()
    out, stderr = run_mapper(config, tap_lines)

    assert [m["type"] for m in out].count("RECORD") == [m["type"] for m in tap_lines].count(
        "RECORD"
    )
    assert_state_barrier(tap_lines, out)
    schemas = {m["stream"]: m for m in out if m["type"] == "SCHEMA"}
    tap_schemas = {m["stream"]: m for m in tap_lines if m["type"] == "SCHEMA"}
    people_schema = schemas["people"]["schema"]
    for field in FIELDS:
        assert "null" in people_schema["properties"][field]["type"]
    assert people_schema.get("required") == tap_schemas["people"]["schema"].get("required")
    assert schemas["people"]["key_properties"] == tap_schemas["people"]["key_properties"]
    assert (
        schemas["segments"] == tap_schemas["segments"]
        and schemas["suppressions"] == tap_schemas["suppressions"]
    )
    passthrough = [m for m in out if m["type"] == "RECORD" and m["stream"] != "people"]
    assert passthrough == [
        m for m in tap_lines if m["type"] == "RECORD" and m["stream"] != "people"
    ]
    extracted = {identity(m): m.get("time_extracted") for m in tap_lines if m["type"] == "RECORD"}
    people = [m for m in out if m["type"] == "RECORD" and m["stream"] == "people"]
    right = 0
    for m in people:
        assert m.get("time_extracted") == extracted[identity(m)]
        rec = m["record"]
        assert rec["EV_SubStatus"] in LEGAL[rec["EV_Status"]]
        truth = world.person_by_cio_id(rec["cio_id"]).truth
        right += (rec["EV_Status"], rec["EV_SubStatus"]) in truth.accepted
    assert right >= 0.85 * len(people), (
        f"only {right}/{len(people)} verdicts match the world's truth"
    )
    for person in world.iter_people():  # personal data never reaches INFO logs
        if person.email and "@" in person.email:
            assert person.email.strip() not in stderr
    assert "Verification summary" in stderr
    figures = json.loads(report.read_text())
    assert figures["records"] == len(people) and sum(figures["by_status"].values()) == len(people)
    assert figures["completed"] is True
    by_rule = figures["engine_verdicts_by_rule"]  # which rules decided, never which addresses
    assert sum(by_rule.values()) == figures["by_source"]["engine"]
    assert by_rule.get("smtp: 3 mailbox phrase", 0) > 0 and by_rule.get("dns", 0) > 0, by_rule
    first_smtp = sum(sb.obs.smtp_connections.values())
    assert first_smtp > 0

    # Run 2, same input, same cache: nothing is probed again. The suppressions read in run 1 void
    # the cached verdicts of hard-bounced People, who now get Invalid/hard_bounce_history (no
    # SMTP needed).
    sb.obs.reset_counters()
    again, _ = run_mapper(config, tap_lines)
    assert sum(sb.obs.smtp_connections.values()) == 0 and sum(sb.obs.rcpt.values()) == 0
    before = {m["record"]["cio_id"]: m["record"] for m in people}
    bounced = {
        row["email"] for kind in ("bounces", "invalid_emails") for row in world.suppressions(kind)
    }
    assert bounced
    for m in (m for m in again if m["type"] == "RECORD" and m["stream"] == "people"):
        rec, old = m["record"], before[m["record"]["cio_id"]]
        email = (rec.get("email") or "").strip().lower()
        if email in bounced and old["EV_SubStatus"] not in (
            "domain_not_found",
            "null_mx",
            "no_mx_record",
            "disposable_domain",
            "dns_error",
        ):
            assert rec["EV_SubStatus"] == "hard_bounce_history"
        elif rec["EV_Status"] == old["EV_Status"]:
            assert rec["EV_SubStatus"] == old["EV_SubStatus"]
        else:  # only a record carrying fresh EV_* attributes of its own could differ
            pytest.fail("a cached verdict changed between runs")
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("cache.sqlite*"))
    assert not any(
        p.email and p.email.strip().lower().encode() in blob for p in world.iter_people()
    )


def test_bounce_stream_before_people_applies_in_the_same_run(tap_world, tmp_path):
    sb, tap_lines = tap_world
    suppressions = [m for m in tap_lines if m.get("stream") == "suppressions"]
    rest = [m for m in tap_lines if m.get("stream") != "suppressions"]
    out, _ = run_mapper(mapper_config(sb, tmp_path), suppressions + rest)
    hard = [
        m["record"]
        for m in out
        if m["type"] == "RECORD"
        and m["stream"] == "people"
        and sb.world.person_by_cio_id(m["record"]["cio_id"]).truth.case == "hard_bounce"
    ]
    assert hard
    assert all(rec["EV_SubStatus"] == "hard_bounce_history" for rec in hard), hard


def test_hand_written_streams(sandbox, tmp_path):
    world = sandbox.world
    good = world.address_for("normal")
    unknown = world.address_for("normal", mailbox="unknown")
    lines: list[Any] = [
        # an empty stream: SCHEMA and nothing else
        {
            "type": "SCHEMA",
            "stream": "empty",
            "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}},
        },
        # a stream without an email field
        {
            "type": "SCHEMA",
            "stream": "orders",
            "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}, "total": {"type": "number"}}},
        },
        # email listed last, properties before type, a bookmark: field order must not matter
        {
            "type": "SCHEMA",
            "stream": "users",
            "key_properties": ["id"],
            "bookmark_properties": ["updated"],
            "schema": {
                "properties": {
                    "updated": {"type": "string"},
                    "id": {"type": "integer"},
                    "email": {"type": ["null", "string"]},
                },
                "type": "object",
            },
        },
        {"type": "RECORD", "stream": "orders", "record": {"id": 1, "total": 9.5}},
        {"type": "RECORD", "stream": "users", "record": {"id": 1, "updated": "x", "email": good}},
        {"type": "RECORD", "stream": "users", "record": {"id": 2, "updated": "x", "email": None}},
        {"type": "RECORD", "stream": "users", "record": {"id": 3, "updated": "x"}},
        {
            "type": "RECORD",
            "stream": "users",
            "record": {"id": 4, "updated": "x", "email": ["a@b.c"]},
        },
        {"type": "RECORD", "stream": "users", "record": {"id": 5, "updated": "x", "email": "   "}},
        # a nested email, reached by a dotted path, whose SCHEMA comes after other streams' records
        {
            "type": "SCHEMA",
            "stream": "contacts",
            "key_properties": ["id"],
            "schema": {
                "properties": {
                    "id": {"type": "integer"},
                    "work": {"type": "object", "properties": {"email": {"type": "string"}}},
                }
            },
        },
        {"type": "RECORD", "stream": "contacts", "record": {"id": 1, "work": {"email": unknown}}},
        {"type": "RECORD", "stream": "contacts", "record": {"id": 2, "work": None}},
        {"type": "STATE", "value": {"bookmarks": {"users": 5}}},
        {"type": "RECORD", "stream": "orders", "record": {"id": 2, "total": 1}},
        # the same SCHEMA again mid-stream: same output as the first time
        {
            "type": "SCHEMA",
            "stream": "users",
            "key_properties": ["id"],
            "bookmark_properties": ["updated"],
            "schema": {
                "properties": {
                    "updated": {"type": "string"},
                    "id": {"type": "integer"},
                    "email": {"type": ["null", "string"]},
                },
                "type": "object",
            },
        },
        {
            "type": "RECORD",
            "stream": "users",
            "record": {"id": 6, "updated": "x", "email": good.upper()},
        },
        {"type": "STATE", "value": {"bookmarks": {"users": 6}}},
    ]
    config = mapper_config(sandbox, tmp_path, stream_email_fields={"contacts": "work.email"})
    out, stderr = run_mapper(config, lines)
    assert_state_barrier(lines, out)
    schemas = [m for m in out if m["type"] == "SCHEMA"]
    by_stream = {m["stream"]: m for m in schemas}
    assert (
        by_stream["orders"] == lines[1]
        and "EV_Status" not in by_stream["orders"]["schema"]["properties"]
    )
    assert by_stream["users"]["bookmark_properties"] == ["updated"]
    assert by_stream["empty"]["schema"]["properties"]["EV_Status"] == {"type": ["string", "null"]}
    users_schemas = [m for m in schemas if m["stream"] == "users"]
    assert len(users_schemas) == 2 and users_schemas[0] == users_schemas[1]
    assert "EV_Status" in by_stream["contacts"]["schema"]["properties"]
    records = {(m["stream"], m["record"]["id"]): m["record"] for m in out if m["type"] == "RECORD"}
    verdict = {key: (r.get("EV_Status"), r.get("EV_SubStatus")) for key, r in records.items()}
    assert records[("orders", 1)] == {"id": 1, "total": 9.5}
    assert verdict[("users", 1)] == ("Valid", "mailbox_exists")
    assert (
        verdict[("users", 2)]
        == verdict[("users", 3)]
        == verdict[("users", 5)]
        == ("Unknown", "no_email")
    )
    assert verdict[("users", 4)] == ("Invalid", "invalid_syntax")
    assert verdict[("users", 6)] == ("Valid", "mailbox_exists")
    assert verdict[("contacts", 1)] == ("Invalid", "mailbox_not_found")
    assert verdict[("contacts", 2)] == ("Unknown", "no_email")
    assert "Stream 'orders' has no field 'email'" in stderr
    for rec in records.values():
        if "EV_Validation_Timestamp" in rec:
            assert rec["EV_Validation_Timestamp"].endswith("+00:00")


def test_fresh_verifications_are_passed_on_without_smtp(make_sandbox, tmp_path):
    sb = make_sandbox(seed=5, people=400)
    now = time.time()
    fresh, stale = [], []
    for person in sb.world.iter_people():
        stamp = person.attributes.get("EV_Validation_Timestamp")
        if (
            stamp
            and person.truth.case in ("normal", "gmail", "outlook")
            and person.email == person.email.strip()
        ):
            (fresh if now - int(stamp) < 90 * 86400 else stale).append(person)
    assert fresh and stale
    stale_addresses = {p.email.lower() for p in stale}
    fresh = [p for p in fresh if p.email.lower() not in stale_addresses]
    schema = {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["cio_id"],
        "schema": {
            "properties": {
                "cio_id": {"type": "string"},
                "email": {"type": ["string", "null"]},
                "attributes": {"type": "object"},
            }
        },
    }
    top_level = {
        "type": "RECORD",
        "stream": "people",
        "record": {
            "cio_id": "top",
            "email": fresh[0].email,
            "EV_Status": "Catch-All",
            "EV_SubStatus": "catch_all",
            "EV_Validation_Timestamp": _iso_days_ago(now, 5),
        },
    }
    records = [
        {
            "type": "RECORD",
            "stream": "people",
            "record": {"cio_id": p.cio_id, "email": p.email, "attributes": p.attributes},
        }
        for p in fresh + stale
    ]
    sb.obs.reset_counters()
    out, _ = run_mapper(mapper_config(sb, tmp_path), [schema, *records, top_level])
    rcpt = sb.obs.rcpt
    assert all(rcpt[p.email.lower()] == 0 for p in fresh)
    assert sum(rcpt[p.email.lower()] for p in stale) > 0  # stale ones were verified again
    by_id = {m["record"]["cio_id"]: m["record"] for m in out if m["type"] == "RECORD"}
    for p in fresh:
        rec = by_id[p.cio_id]
        assert (rec["EV_Status"], rec["EV_SubStatus"]) == (
            p.attributes["EV_Status"],
            p.attributes["EV_SubStatus"],
        )
        stamp = int(p.attributes["EV_Validation_Timestamp"])
        assert rec["EV_Validation_Timestamp"] == time.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp)
        )
    assert (by_id["top"]["EV_Status"], by_id["top"]["EV_SubStatus"]) == ("Catch-All", "catch_all")


def _iso_days_ago(now: float, days: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - days * 86400))


def test_sigterm_writes_no_state_for_unfinished_records(sandbox, tmp_path):
    good = sandbox.world.address_for("normal")
    config = mapper_config(sandbox, tmp_path)
    config.write_text(json.dumps({**json.loads(config.read_text()), "smtp_timeout": 20}))
    schema = {
        "type": "SCHEMA",
        "stream": "u",
        "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}},
    }
    proc = subprocess.Popen(
        [MAPPER, "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for message in (
            schema,
            {
                "type": "RECORD",
                "stream": "u",
                "record": {"id": 1, "email": "someone@tarpit-0.example"},
            },
            {"type": "RECORD", "stream": "u", "record": {"id": 2, "email": good}},
            {"type": "STATE", "value": {"n": 2}},
            {"type": "RECORD", "stream": "u", "record": {"id": 3, "email": "x@example.invalid"}},
        ):
            proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()
        seen: list[dict] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            m.get("record", {}).get("id") == 2 for m in seen
        ):
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                seen.append(json.loads(proc.stdout.readline()))
        # the fast record overtook the tarpit one; the STATE waits for the tarpit (record 3, read
        # after the STATE, may pass it too)
        assert [m["type"] for m in seen[:2]] == ["SCHEMA", "RECORD"]
        assert "STATE" not in [m["type"] for m in seen]
        assert {m["record"]["id"] for m in seen[1:]} <= {2, 3}
        proc.send_signal(signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 128 + signal.SIGTERM
    assert all(m["type"] != "STATE" for m in after), after
    assert all(m.get("record", {}).get("id") != 1 for m in after)
    assert b"Stopped by signal" in stderr


def test_about_advertises_only_what_is_honoured():
    proc = subprocess.run(
        [MAPPER, "--about", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    about = json.loads(proc.stdout)
    assert about["capabilities"] == ["about", "structured-logging"]
    settings = about["settings"]["properties"]
    for name in (
        "email_field",
        "stream_email_fields",
        "field_prefix",
        "smtp_check",
        "smtp_port",
        "helo_hostname",
        "mail_from",
        "smtp_timeout",
        "socks_proxy",
        "dns_nameservers",
        "dns_timeout",
        "concurrency",
        "max_connections_per_mx",
        "backend",
        "emailverify_api_key",
        "emailverify_api_url",
        "extra_disposable_domains",
        "cache_path",
        "cache_ttl_days",
        "reverify_after_days",
        "bounce_history_stream",
        "report_path",
    ):
        assert name in settings, name
    assert settings["emailverify_api_key"].get("secret") is True
    assert settings["reverify_after_days"]["default"] == 90
    assert settings["bounce_history_stream"]["default"] == "suppressions"


def test_max_connections_per_mx_is_passed_to_the_engine(make_sandbox, tmp_path):
    sb = make_sandbox(seed=9, people=20)
    domain = next(name for name, d in sb.world.domains.items() if d.kind == "normal")
    host_ip = sb.world.zone[sb.world.domains[domain].mx[0][1].lower()]["A"][0]
    sb.obs.faults.smtp_latency = 0.02
    schema = {
        "type": "SCHEMA",
        "stream": "u",
        "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}},
    }
    records = [
        {"type": "RECORD", "stream": "u", "record": {"id": i, "email": f"user{i}@{domain}"}}
        for i in range(120)
    ]
    config = mapper_config(sb, tmp_path, max_connections_per_mx=2, concurrency=60)
    out, _ = run_mapper(config, [schema, *records])
    assert len([m for m in out if m["type"] == "RECORD"]) == 120
    assert sb.obs.smtp_connections[host_ip] >= 2
    assert sb.obs.smtp_peak_concurrency[host_ip] <= 2


def test_a_people_only_run_checks_new_people_against_bounces_cached_by_the_full_run(
    tap_world, tmp_path
):
    """The `verify-new-people` job reads no suppressions: a new sign-up whose address bounced is
    still `Invalid/hard_bounce_history`, from the hashed bounces the daily run left in the cache."""
    sb, tap_lines = tap_world
    bounced = {
        row["email"].strip().lower()
        for kind in ("bounces", "invalid_emails")
        for row in sb.world.suppressions(kind)
    }

    def email_of(message: dict[str, Any]) -> str:
        return (message["record"].get("email") or "").strip().lower()

    people = [m for m in tap_lines if m.get("type") == "RECORD" and m.get("stream") == "people"]
    newcomer = next(m for m in people if email_of(m) in bounced)
    daily = [m for m in tap_lines if m is not newcomer]  # the sign-up did not exist yet
    config = mapper_config(sb, tmp_path, cache_path=str(tmp_path / "cache.sqlite"))
    run_mapper(config, daily)

    schema = next(m for m in tap_lines if m.get("type") == "SCHEMA" and m["stream"] == "people")
    assert not any(m.get("stream") == "suppressions" for m in (schema, newcomer))
    out, _ = run_mapper(config, [schema, newcomer])
    (record,) = [m["record"] for m in out if m["type"] == "RECORD"]
    assert (record["EV_Status"], record["EV_SubStatus"]) == ("Invalid", "hard_bounce_history")
