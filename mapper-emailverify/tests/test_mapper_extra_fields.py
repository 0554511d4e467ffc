"""The mapper's executable with `extra_fields` against the sandbox: schema and values match the
world's truth (its provider per Person, its typo domains), a second run answered from `cache_path`
gives the same values, and with the setting off the output has exactly the fields it had before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cio_sandbox import Sandbox
from cio_sandbox.world import Person
from cio_sandbox.world_data import TYPO_DOMAINS

MAPPER = str(Path(sys.executable).parent / "mapper-emailverify")
SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": ["id"],
    "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": ["string", "null"]}}},
}
#: What each of the sandbox's typo domains is a typo of.
MEANT = {
    "gmai.com": "gmail.com",
    "gamil.com": "gmail.com",
    "gnail.com": "gmail.com",
    "yaho.com": "yahoo.com",
    "outlok.com": "outlook.com",
    "gmail.con": "gmail.com",
}
ALL = ["Provider", "Free", "Role", "DidYouMean"]
#: Cases that only cost time here (tarpits, greylisting): their extras are the same as any other's.
SLOW = {"tarpit", "greylist", "slow_banner", "timeout"}


def sample(sb: Sandbox) -> list[Person]:
    """People of every case and provider, a few of each, in world order."""
    seen: dict[tuple[str, str | None], int] = {}
    picked = []
    for person in sb.world.iter_people():
        case = person.truth.case
        if any(word in case for word in SLOW):
            continue
        key = (case, person.truth.provider)
        if seen.get(key, 0) < 4:
            seen[key] = seen.get(key, 0) + 1
            picked.append(person)
    return picked


def run(sb: Sandbox, tmp: Path, people: list[Person], **over: Any) -> list[dict[str, Any]]:
    config = tmp / f"config-{len(list(tmp.iterdir()))}.json"
    config.write_text(
        json.dumps(sb.mapper_config(smtp_timeout=2, cache_path=str(tmp / "cache.db"), **over))
    )
    lines = [
        SCHEMA,
        *(
            {"type": "RECORD", "stream": "people", "record": {"id": p.index, "email": p.email}}
            for p in people
        ),
    ]
    proc = subprocess.run(
        [MAPPER, "--config", str(config)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def records(out: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {m["record"]["id"]: m["record"] for m in out if m["type"] == "RECORD"}


def test_extra_fields_match_the_worlds_truth_and_the_cache_gives_the_same(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    people = sample(sandbox)
    assert len({p.truth.provider for p in people}) >= 4
    out = run(sandbox, tmp_path, people, extra_fields=ALL)
    [schema] = [m for m in out if m["type"] == "SCHEMA"]
    properties = schema["schema"]["properties"]
    assert properties["EV_Provider"] == properties["EV_DidYouMean"] == {"type": ["string", "null"]}
    assert properties["EV_Free"] == properties["EV_Role"] == {"type": ["boolean", "null"]}
    got = records(out)
    world = sandbox.world
    for person in people:
        record, truth = got[person.index], person.truth
        where = f"{person.email!r} ({truth.case})"
        if truth.substatus in ("no_email", "invalid_syntax"):
            assert [record[f"EV_{n}"] for n in ALL] == [None] * 4, where
            continue
        provider = truth.provider or world.provider_of(person.email or "")
        if provider is not None:
            assert record["EV_Provider"] == provider, where
        else:
            assert record["EV_Provider"] in (None, "other"), where
        domain = (person.email or "").strip().rpartition("@")[2].lower()
        assert record["EV_Free"] is (provider in ("gmail", "outlook", "yahoo")), where
        if truth.substatus == "role_based":
            assert record["EV_Role"] is True, where
        assert isinstance(record["EV_Role"], bool), where
        if domain in TYPO_DOMAINS:
            local = (person.email or "").strip().rpartition("@")[0]
            assert record["EV_DidYouMean"] == f"{local}@{MEANT[domain]}", where
        else:
            assert record["EV_DidYouMean"] is None, where
    # Every domain of the world that is not a typo is left alone.
    assert [d for d, dom in world.domains.items() if dom.kind != "typo" and _suggests(d)] == []

    again = records(run(sandbox, tmp_path, people, extra_fields=ALL))  # from cache_path now
    for person in people:
        first, second = got[person.index], again[person.index]
        if person.truth.provider is None and second["EV_Provider"] is None:
            # A domain whose MX no SMTP conversation confirmed is not kept in cache_path: a
            # passed-on record then has no provider (the target leaves the attribute alone).
            second = {**second, "EV_Provider": first["EV_Provider"]}
        assert {n: second[f"EV_{n}"] for n in ALL} == {n: first[f"EV_{n}"] for n in ALL}, (
            person.email
        )


def _suggests(domain: str) -> bool:
    from mapper_emailverify.engine.lists import did_you_mean

    return did_you_mean(domain) is not None


def test_with_the_setting_off_the_output_has_the_same_fields_as_before(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    people = sample(sandbox)[:40]
    out = run(sandbox, tmp_path, people)
    [schema] = [m for m in out if m["type"] == "SCHEMA"]
    added = ["EV_Status", "EV_SubStatus", "EV_Validation_Timestamp"]
    assert list(schema["schema"]["properties"]) == ["id", "email", *added]
    for record in records(out).values():
        assert list(record) == ["id", "email", *added]
    on = run(sandbox, tmp_path, people, extra_fields=["Role"], field_prefix="X_")
    for record in records(on).values():
        assert list(record) == [
            "id",
            "email",
            "X_Status",
            "X_SubStatus",
            "X_Validation_Timestamp",
            "X_Role",
        ]
