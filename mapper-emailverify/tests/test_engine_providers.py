"""The engine against the sandbox's provider look-alikes: real DNS and SMTP on loopback, mail hosts
named by the real MX host names (gmail-smtp-in.l.google.com, *.olc.protection.outlook.com,
mx.yandex.net ...) answering as `../shared/reference/mail_providers.md` describes.

Accuracy per provider on a world where most People sit on the big providers: no false Invalid, no
false Valid on the providers SMTP cannot verify, greylisted mailboxes resolved within the run; the
politeness rules seen from the servers' side (no transaction mixing domains, one RCPT per
Outlook.com session, no catch-all probe where the provider has no catch-all); domain knowledge
carried to the next run; and the per-provider backend.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.report import accuracy_by_provider
from cio_sandbox.world import PROVIDER_CASE_WEIGHTS
from mapper_emailverify import Result, Verifier
from mapper_emailverify.engine.domain_knowledge import DomainKnowledge
from mapper_emailverify.stream_map.domain_cache import SqliteDomainKnowledge

#: The greylisting hosts (Zoho, the Postgrey look-alike) defer a new triplet this long.
GREYLIST_WINDOW = 1.5


def settings(sb: Sandbox, **over: Any) -> dict[str, Any]:
    bounces = [
        row["email"] for kind in World.HARD_BOUNCE_KINDS for row in sb.world.suppressions(kind)
    ]
    defaults = {
        "hard_bounces": bounces,
        "smtp_timeout": 2.0,
        "greylist_retry_after": 2.0,
        "greylist_max_wait": 20.0,
        "concurrency": 200,
    }
    return sb.mapper_config(**{**defaults, **over})


def verify(
    config: dict[str, Any], addresses: Iterable[str], knowledge: DomainKnowledge | None = None
) -> tuple[list[Result], Counter[str]]:
    async def go() -> tuple[list[Result], Counter[str]]:
        async with Verifier(config, knowledge=knowledge) as verifier:
            results = await verifier.verify_many(list(addresses))
            return results, Counter(verifier.counters)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def provider_world() -> Any:
    sb = Sandbox(World(seed=18, people=1200, case_weights=PROVIDER_CASE_WEIGHTS)).start()
    sb.obs.faults.greylist_seconds = GREYLIST_WINDOW
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def first_run(
    provider_world: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Result], Counter[str], Path, dict[str, Any]]:
    sb = provider_world
    sb.obs.reset_counters()
    addresses = sorted({p.email for p in sb.world.iter_people() if p.email and "@" in p.email})
    path = tmp_path_factory.mktemp("knowledge") / "cache.sqlite"
    store = SqliteDomainKnowledge(path, ttl_days=7)
    started = time.monotonic()
    try:
        results, counters = verify(settings(sb), addresses, store)
    finally:
        store.close()
    observed = {
        "elapsed": time.monotonic() - started,
        "stranger_rcpts": Counter(sb.obs.stranger_rcpts),
        "mixed_domain_rejections": sum(sb.obs.mixed_domain_rejections.values()),
        "rcpt_limit_rejections": Counter(sb.obs.rcpt_limit_rejections),
    }
    return dict(zip(addresses, results, strict=True)), counters, path, observed


def _pairs(results: dict[str, Result]) -> dict[str, tuple[str, str]]:
    return {address: (str(r.status), str(r.substatus)) for address, r in results.items()}


def test_accuracy_per_provider(provider_world: Sandbox, first_run: Any) -> None:
    results, counters, _, _ = first_run
    table = accuracy_by_provider(provider_world.world, _pairs(results))
    assert {"gmail", "google_workspace", "outlook", "microsoft365", "yahoo", "zoho"} <= set(table)
    for provider, row in table.items():
        assert row.false_invalid == 0, provider
        assert row.correct == row.people, (provider, row)
    for provider in ("yahoo", "mailru"):
        assert table[provider].false_valid == 0
    # Greylisted mailboxes are resolved to their real state, not left Unknown/greylisted.
    for provider in ("zoho", "other"):
        if provider in table:
            assert table[provider].exact == table[provider].people, (provider, table[provider])
    assert counters["greylisted"] > 0 and counters["greylist_resolved"] == counters["greylisted"]


def test_evidence_names_the_provider(provider_world: Sandbox, first_run: Any) -> None:
    results, _, _, _ = first_run
    for address, result in results.items():
        person = provider_world.world.person_by_email(address)
        if person is None or person.truth.provider is None:
            continue
        if result.evidence.mx_hosts:  # past DNS
            assert result.evidence.provider == person.truth.provider, address


def test_politeness_seen_from_the_servers(first_run: Any) -> None:
    _, counters, _, observed = first_run
    # Never two recipient domains in one transaction (Gmail's 451 4.3.0).
    assert observed["mixed_domain_rejections"] == 0
    # Outlook.com: one RCPT per session, so never its 452 on a second recipient.
    assert not {h: n for h, n in observed["rcpt_limit_rejections"].items() if "olc." in h}
    # No catch-all probe where the provider has none (Gmail, Outlook.com consumer).
    strangers = observed["stranger_rcpts"]
    assert strangers["gmail-smtp-in.l.google.com"] == 0
    assert not {h: n for h, n in strangers.items() if "olc.protection.outlook.com" in h}
    assert counters["catch_all_skipped"] >= 2
    assert counters["catch_all_probes"] > 0


def test_greylist_retry_waits_for_the_named_delay_or_the_setting(first_run: Any) -> None:
    results, _, _, _ = first_run
    named = [r for r in results.values() if "postgrey" in (r.evidence.domain or "")]
    unnamed = [r for r in results.values() if r.evidence.provider == "zoho"]
    assert named and unnamed
    for result in named:
        assert result.evidence.greylist_retries >= 1
        assert any("(the delay the server named)" in step for step in result.evidence.steps)
    for result in unnamed:
        assert result.evidence.greylist_retries >= 1
        assert any("(greylist_retry_after)" in step for step in result.evidence.steps)
        assert str(result.status) != "Unknown"


def test_second_run_spends_no_catch_all_probe_on_known_domains(
    provider_world: Sandbox, first_run: Any
) -> None:
    results, first_counters, path, _ = first_run
    sb = provider_world
    sb.obs.reset_counters()
    store = SqliteDomainKnowledge(path, ttl_days=7)
    try:
        again, counters = verify(settings(sb, greylist_max_wait=0), list(results), store)
    finally:
        store.close()
    assert first_counters["catch_all_probes"] > 0
    assert counters["catch_all_probes"] < first_counters["catch_all_probes"] / 4
    assert counters["catch_all_cached"] > 0
    assert sum(sb.obs.stranger_rcpts.values()) == counters["catch_all_probes"]
    # The knowledge changes no verdict about a catch-all domain.
    for address, result in zip(results, again, strict=True):
        if str(results[address].status) == "Catch-All":
            assert str(result.status) == "Catch-All", address


def test_greylisting_off_leaves_the_address_unknown(provider_world: Sandbox) -> None:
    sb = provider_world
    address = next(
        p.email
        for p in sb.world.iter_people()
        if p.truth.provider == "zoho" and p.email and p.email == p.email.strip()
    )
    sb.obs.faults.greylist_seconds = 60.0  # a window no retry of this test reaches
    try:
        [off], counters = verify(settings(sb, greylist_max_wait=0), [f"new-{address}"])
        [short], _ = verify(
            settings(sb, greylist_retry_after=0.5, greylist_max_wait=1.2), [f"new2-{address}"]
        )
    finally:
        sb.obs.faults.greylist_seconds = GREYLIST_WINDOW
    assert (str(off.status), str(off.substatus)) == ("Unknown", "greylisted")
    assert off.evidence.greylist_retries == 0 and counters["greylisted"] == 0
    assert (str(short.status), str(short.substatus)) == ("Unknown", "greylisted")
    assert short.evidence.greylist_retries == 2  # 0.5 s, then 1.0 s: the next would pass 1.2 s


def test_backend_by_provider_sends_that_provider_to_the_api(provider_world: Sandbox) -> None:
    sb = provider_world
    people = [p for p in sb.world.iter_people() if p.email and p.email == p.email.strip()]
    yahoo = [p.email for p in people if p.truth.provider == "yahoo"][:5]
    gmail = [p.email for p in people if p.truth.provider == "gmail"][:5]
    assert yahoo and gmail
    before = sb.obs.requests_to("emailverify")
    results, _ = verify(
        settings(sb, backend_by_provider={"yahoo": "emailverify"}), [*yahoo, *gmail]
    )
    assert sb.obs.requests_to("emailverify") - before == len(yahoo)
    for result in results[: len(yahoo)]:
        assert result.evidence.backend == "emailverify" and result.evidence.provider == "yahoo"
    for result in results[len(yahoo) :]:
        assert result.evidence.backend == "builtin" and result.evidence.smtp_replies


def _address_at(sb: Sandbox, provider: str, mailbox: str) -> str:
    check: Callable[[Any], bool] = lambda p: (  # noqa: E731
        p.truth.provider == provider and p.mailbox == mailbox and p.email == (p.email or "").strip()
    )
    return next(p.email for p in sb.world.iter_people() if check(p) and p.email)


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("yandex", ("Invalid", "mailbox_not_found")),  # 550 5.7.1 No such user!
        ("microsoft365", ("Invalid", "mailbox_not_found")),  # 550 5.4.1 DBEB
        ("outlook", ("Invalid", "mailbox_not_found")),  # 550 5.5.0 mailbox unavailable
        ("gmx", ("Invalid", "mailbox_not_found")),  # no enhanced code
    ],
)
def test_unknown_mailbox_at_each_provider(
    provider_world: Sandbox, provider: str, expected: tuple[str, str]
) -> None:
    address = _address_at(provider_world, provider, "unknown")
    [result], _ = verify(settings(provider_world), [address])
    assert (str(result.status), str(result.substatus)) == expected, result.evidence.steps
