"""Every Unknown explained: causes, redaction, and the run report's groups (issue 18, item 5)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from mapper_emailverify.engine.explain import (
    ADVICE,
    CAUSES,
    MAX_EXAMPLE,
    Explanation,
    clean_example,
    explain,
    redact_addresses,
)
from mapper_emailverify.engine.result import Evidence, Result, SmtpReply
from mapper_emailverify.stream_map.progress import Progress
from mapper_emailverify.taxonomy import TEMPORARILY_FULL, Status, SubStatus

HOST = "mx1.example.net"


def reply(command: str, code: int, text: str, enhanced: str | None = None) -> SmtpReply:
    return SmtpReply(HOST, command, code, enhanced, text)


SETUP = [
    reply("banner", 220, "mx1.example.net ESMTP"),
    reply("EHLO", 250, "mx1.example.net"),
]


def unknown(
    substatus: SubStatus,
    *,
    replies: list[SmtpReply] | None = None,
    decisive: SmtpReply | None = None,
    decided_by: str = "",
    provider: str | None = None,
) -> Result:
    evidence = Evidence(
        provider=provider,
        smtp_replies=list(replies or []),
        decided_by=decided_by,
        decisive_reply=str(decisive) if decisive is not None else None,
    )
    return Result.of(substatus, evidence)


def smtp_refusal(substatus: SubStatus, failing: SmtpReply, provider: str | None = None) -> Result:
    """A refusal as the prober records it: the setup, then the reply that refused (decisive)."""
    replies = [failing] if failing.command == "banner" else [*SETUP, failing]
    return unknown(substatus, replies=replies, decisive=failing, provider=provider)


# -- each cause ----------------------------------------------------------------------------------


CASES = [
    (
        "timeout",
        unknown(
            SubStatus.SMTP_TIMEOUT,
            replies=SETUP,
            decided_by="smtp: the server did not answer within smtp_timeout (a tarpit)",
        ),
        "smtp: the server did not answer within smtp_timeout (a tarpit)",
    ),
    (
        "greylisted",
        smtp_refusal(
            SubStatus.GREYLISTED,
            reply("RCPT", 451, "4.7.1 Greylisted, try again after some time", "4.7.1"),
            provider="zoho",
        ),
        "451 4.7.1 Greylisted, try again after some time",
    ),
    (
        "blocked_at_connect",
        smtp_refusal(
            SubStatus.SMTP_BLOCKED,
            reply("banner", 554, "5.7.1 Service unavailable; client host blocked using Spamhaus"),
        ),
        "554 5.7.1 Service unavailable; client host blocked using Spamhaus",
    ),
    (
        "blocked_at_connect",
        smtp_refusal(SubStatus.SMTP_BLOCKED, reply("HELO", 550, "HELO name rejected")),
        "550 HELO name rejected",
    ),
    (
        "blocked_at_mail",
        smtp_refusal(
            SubStatus.SMTP_BLOCKED,
            reply("MAIL", 550, "5.7.1 Sender address rejected: domain not found", "5.7.1"),
        ),
        "550 5.7.1 Sender address rejected: domain not found",
    ),
    (
        "blocked_at_rcpt",
        smtp_refusal(
            SubStatus.SMTP_BLOCKED,
            reply("RCPT", 550, "5.7.1 Client host rejected: cannot find your reverse hostname"),
            provider="microsoft365",
        ),
        "550 5.7.1 Client host rejected: cannot find your reverse hostname",
    ),
    (
        "blocked_at_rcpt",
        smtp_refusal(
            SubStatus.SMTP_BLOCKED,
            reply("RCPT (catch-all probe)", 550, "5.7.1 Policy rejection"),
        ),
        "550 5.7.1 Policy rejection",
    ),
    (
        "blocked",  # the EmailVerify.io backend: no reply, no stage
        unknown(SubStatus.SMTP_BLOCKED, decided_by="emailverify: smtp_blocked"),
        "emailverify: smtp_blocked",
    ),
    (
        "provider_unverifiable",
        unknown(
            SubStatus.PROVIDER_UNVERIFIABLE,
            decided_by="provider rule: yahoo accepts every recipient at RCPT and bounces later",
            provider="yahoo",
        ),
        "provider rule: yahoo accepts every recipient at RCPT and bounces later",
    ),
    (
        "dns_error",
        unknown(SubStatus.DNS_ERROR, decided_by="dns: MX lookup timed out"),
        "dns: MX lookup timed out",
    ),
    (
        "not_contacted",
        unknown(
            SubStatus.MX_NOT_PUBLIC,
            decided_by="mx not public: mx.corp 10.0.0.5 is private (not contacted; "
            "allow_private_mx is off)",
        ),
        "mx not public: mx.corp 10.0.0.5 is private",
    ),
    (
        "smtp_unavailable",
        unknown(SubStatus.SMTP_UNAVAILABLE, decided_by="smtp: port 25 unreachable from this host"),
        "smtp: port 25 unreachable from this host",
    ),
    (
        "smtp_check_off",
        unknown(SubStatus.SMTP_UNAVAILABLE, decided_by="smtp: skipped (smtp_check is off)"),
        "smtp: skipped (smtp_check is off)",
    ),
    (
        "smtputf8_unsupported",
        unknown(
            SubStatus.SMTP_UNAVAILABLE,
            replies=SETUP,
            decided_by="smtp: the address needs SMTPUTF8, which the server does not offer",
        ),
        "smtp: the address needs SMTPUTF8",
    ),
    (
        "connection_failed",
        unknown(
            SubStatus.SMTP_CONNECTION_FAILED,
            replies=SETUP,
            decided_by="smtp: mail hosts dropped the connection",
        ),
        "smtp: mail hosts dropped the connection",
    ),
    (
        "connection_failed",  # a busy greeting (421) is a connection problem, not a block
        smtp_refusal(
            SubStatus.SMTP_CONNECTION_FAILED, reply("banner", 421, "4.7.0 Too many connections")
        ),
        "421 4.7.0 Too many connections",
    ),
    (
        "full_for_now",
        Result(
            *TEMPORARILY_FULL,
            Evidence(
                smtp_replies=[*SETUP, reply("RCPT", 452, "4.2.2 Mailbox full", "4.2.2")],
                decisive_reply=str(reply("RCPT", 452, "4.2.2 Mailbox full", "4.2.2")),
            ),
        ),
        "452 4.2.2 Mailbox full",
    ),
    ("no_email", unknown(SubStatus.NO_EMAIL, decided_by="no email address"), "no email address"),
]


@pytest.mark.parametrize(("cause", "result", "example"), CASES)
def test_each_cause(cause: str, result: Result, example: str) -> None:
    found = explain(result)
    assert found is not None
    assert found.cause == cause
    assert found.cause in CAUSES and found.cause in ADVICE
    assert found.example.startswith(example) or example in found.example
    assert found.advice.endswith(".")
    assert "{backend}" not in found.advice and "{provider}" not in found.advice


def test_every_cause_is_documented_with_advice() -> None:
    assert set(CAUSES) == set(ADVICE)
    causes_seen = {cause for cause, _, _ in CASES}
    assert causes_seen == set(CAUSES) - {"other"}


def test_provider_and_advice_name_the_settings() -> None:
    yahoo = explain(CASES[8][1])
    assert yahoo is not None and yahoo.provider == "yahoo"
    assert "`backend_by_provider: {yahoo: emailverify}`" in yahoo.advice
    assert "EmailVerify.io" in yahoo.advice
    # The provider rule names the provider even when the evidence does not carry it.
    bare = unknown(
        SubStatus.PROVIDER_UNVERIFIABLE,
        decided_by="provider rule: mailru accepts every recipient at RCPT and bounces later",
    )
    found = explain(bare)
    assert (
        found is not None and found.provider == "mailru" and "{mailru: emailverify}" in found.advice
    )
    nameless = explain(unknown(SubStatus.PROVIDER_UNVERIFIABLE, decided_by="provider rule"))
    assert nameless is not None and nameless.provider == "other"
    assert "{<provider>: emailverify}" in nameless.advice

    def advice(cause: str) -> str:
        found = next(explain(r) for c, r, _ in CASES if c == cause)
        assert found is not None
        return found.advice

    for cause in ("blocked_at_connect", "blocked_at_mail"):
        assert "socks_proxy" in advice(cause) and "reverse DNS" in advice(cause)
        assert "helo_hostname" in advice(cause) and "mail_from" in advice(cause)
    assert "greylist_max_wait" in advice("greylisted") and "filter: unknown" in advice("greylisted")
    assert "smtp_timeout" in advice("timeout") and "verification_deadline" in advice("timeout")
    assert "filter: unknown" in advice("timeout")
    assert "dns_nameservers" in advice("dns_error")
    assert "allow_private_mx" in advice("not_contacted")
    assert "socks_proxy" in advice("smtp_unavailable")
    assert "backend: emailverify" in advice("smtp_unavailable")
    # A known provider gets its backend_by_provider key; no provider, the whole backend (never a
    # backend_by_provider key the config would refuse).
    rcpt = explain(CASES[5][1])
    assert rcpt is not None and "`backend_by_provider: {microsoft365: emailverify}`" in rcpt.advice
    assert "`backend: emailverify`" in advice("blocked") and "backend_by_provider" not in advice(
        "blocked"
    )


def test_not_unknown_gives_none() -> None:
    accepted = Result.of(SubStatus.MAILBOX_EXISTS, Evidence(provider="gmail"))
    assert explain(accepted) is None
    assert explain(Result.of(SubStatus.MAILBOX_FULL, Evidence())) is None  # Invalid/mailbox_full
    assert explain(None) is None
    assert explain(SimpleNamespace(status="Valid", substatus="mailbox_exists")) is None


def test_stage_from_the_last_reply_when_no_reply_decided() -> None:
    result = unknown(
        SubStatus.SMTP_BLOCKED,
        replies=[*SETUP, reply("MAIL", 553, "5.7.1 rejected")],
        decided_by="smtp: refused before any recipient: MAIL: policy or reputation",
    )
    found = explain(result)
    assert found is not None and found.cause == "blocked_at_mail"
    assert found.example.startswith("smtp: refused before any recipient")


def test_stage_from_the_decisive_string_alone() -> None:
    evidence = SimpleNamespace(
        decisive_reply="mx.example.org: MAIL -> 550 5.7.1 go away",
        decided_by="smtp: x",
        smtp_replies=None,
        provider=None,
    )
    found = explain(
        SimpleNamespace(status=Status.UNKNOWN, substatus="smtp_blocked", evidence=evidence)
    )
    assert found is not None
    assert (found.cause, found.provider, found.example) == (
        "blocked_at_mail",
        "other",
        "550 5.7.1 go away",
    )


# -- fakes ---------------------------------------------------------------------------------------


def test_a_fake_without_evidence_is_explained_from_its_substatus() -> None:
    found = explain(SimpleNamespace(status="Unknown", substatus="greylisted"))
    assert found == Explanation(
        "greylisted", "other", "greylisted (no evidence recorded)", found.advice if found else ""
    )
    blocked = explain(SimpleNamespace(status="Unknown", substatus="smtp_blocked"))
    assert blocked is not None and blocked.cause == "blocked"
    weird = explain(SimpleNamespace(status="Unknown", substatus="something_new"))
    assert weird is not None and weird.cause == "other"
    no_status = explain(SimpleNamespace(substatus="smtp_timeout"))
    assert no_status is not None and no_status.cause == "timeout"
    assert explain(SimpleNamespace(substatus="mailbox_exists")) is None
    broken = SimpleNamespace(
        status="Unknown",
        substatus="smtp_blocked",
        evidence=SimpleNamespace(smtp_replies=["not a reply", 42], provider="Not A Name!"),
    )
    found = explain(broken)
    assert found is not None and found.cause == "blocked" and found.provider == "other"


# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "<john.doe@example.com>: Recipient address rejected",
            "<address>: Recipient address rejected",
        ),
        ("5.1.1 john.doe@example.com... User unknown", "5.1.1 <address>... User unknown"),
        ("RCPT TO:<jane+tag@sub.example.co.uk> refused", "RCPT TO:<address> refused"),
        ("jane@example.com", "<address>"),
        ("<jane@example.com>", "<address>"),
        ("user josé@exämple.de rejected", "user <address> rejected"),
        ("用户@例子.广告 no such user", "<address> no such user"),
        ('"john doe"@example.com unknown', "<address> unknown"),
        ("mailbox (a@b.c) unavailable", "mailbox (<address>) unavailable"),
        ("fullwidth jane\uff20example.com", "fullwidth <address>"),
        ("two: a@x.org, b@y.org.", "two: <address>, <address>."),
        ("no address here", "no address here"),
    ],
)
def test_addresses_are_redacted(text: str, expected: str) -> None:
    assert redact_addresses(text) == expected
    assert "@" not in clean_example(text)


def test_examples_are_one_clean_bounded_line() -> None:
    dirty = "550\x00 5.1.1 <a@b.example>\r\n\tUser\x1b[31m unknown\u202e " + "x" * 400
    shown = clean_example(dirty)
    assert len(shown) <= MAX_EXAMPLE and shown.endswith("…")
    assert shown.startswith("550 5.1.1 <address> User[31m unknown x")
    assert not any(ord(char) < 32 or char == "\u202e" for char in shown)
    # Redacted before cut: an address straddling the limit never leaves half of itself behind.
    straddling = "y" * (MAX_EXAMPLE - 5) + " someone.long@example.org"
    assert "@" not in clean_example(straddling) and "someone" not in clean_example(straddling)


def test_a_reply_made_only_of_an_address() -> None:
    result = smtp_refusal(SubStatus.SMTP_BLOCKED, reply("RCPT", 550, "<victim@example.org>"))
    found = explain(result)
    assert found is not None and found.example == "550 <address>"


# -- the run report ------------------------------------------------------------------------------


def _progress() -> Progress:
    return Progress(logging.getLogger("test-explain"), log_every=0)


PERSONAL = [
    smtp_refusal(
        SubStatus.GREYLISTED,
        reply("RCPT", 450, "4.2.0 <alice@zoho.example>: Recipient address rejected: Greylisted"),
        provider="zoho",
    ),
    smtp_refusal(
        SubStatus.GREYLISTED,
        reply("RCPT", 450, "4.2.0 <bob@zoho.example>: Recipient address rejected: Greylisted"),
        provider="zoho",
    ),
    smtp_refusal(
        SubStatus.GREYLISTED,
        reply("RCPT", 451, "carol@zoho.example try again"),
        provider="zoho",
    ),
    smtp_refusal(
        SubStatus.SMTP_BLOCKED,
        reply("MAIL", 550, "5.7.1 dave@ours.example: sender rejected"),
        provider="microsoft365",
    ),
    unknown(
        SubStatus.PROVIDER_UNVERIFIABLE,
        provider="yahoo",
        decided_by="provider rule: yahoo accepts every recipient at RCPT and bounces later",
    ),
    unknown(
        SubStatus.PROVIDER_UNVERIFIABLE,
        provider="yahoo",
        decided_by="provider rule: yahoo accepts every recipient at RCPT and bounces later",
    ),
]


def test_progress_groups_sorts_and_keeps_the_first_example() -> None:
    progress = _progress()
    for result in PERSONAL:
        progress.explain(result)
    progress.explain(None)  # the engine raised
    progress.explain(Result.of(SubStatus.MAILBOX_EXISTS, Evidence()))  # not an Unknown: ignored
    groups = progress.snapshot()["unknowns"]
    assert [(g["provider"], g["cause"], g["count"]) for g in groups] == [
        ("zoho", "greylisted", 3),
        ("yahoo", "provider_unverifiable", 2),
        ("microsoft365", "blocked_at_mail", 1),
        ("other", "other", 1),
    ]
    assert groups[0]["example"] == "450 4.2.0 <address>: Recipient address rejected: Greylisted"
    assert set(groups[0]) == {"provider", "cause", "count", "example", "advice"}
    assert "greylist_max_wait" in groups[0]["advice"]
    assert "{yahoo: emailverify}" in groups[1]["advice"]
    assert "internal error" in groups[3]["example"]
    assert "smtp" not in progress.snapshot()


def test_progress_survives_an_explainer_that_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import mapper_emailverify.stream_map.progress as module

    def boom(result: object) -> Explanation | None:
        raise RuntimeError("bug")

    monkeypatch.setattr(module, "explain", boom)
    progress = _progress()
    progress.explain(SimpleNamespace(status="Unknown", substatus="greylisted"))
    assert progress.snapshot()["unknowns"][0]["cause"] == "other"


def test_progress_groups_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import mapper_emailverify.stream_map.progress as module

    monkeypatch.setattr(module, "MAX_UNKNOWN_GROUPS", 3)
    progress = _progress()
    for name in ("gmail", "zoho", "yahoo", "icloud", "gmx", "proton"):
        progress.explain(unknown(SubStatus.SMTP_TIMEOUT, provider=name))
    groups = progress.snapshot()["unknowns"]
    assert len(groups) == 4 and sum(g["count"] for g in groups) == 6
    assert ("other", "timeout", 3) in [(g["provider"], g["cause"], g["count"]) for g in groups]


def test_summary_and_report_without_engine_counters(tmp_path, caplog) -> None:
    progress = _progress()
    progress.count_engine("Valid", "mailbox_exists")
    assert "Unknowns by provider and cause" not in progress.summary_table()
    assert "SMTP:" not in progress.summary_table()
    for result in PERSONAL:
        progress.count_engine(str(result.status), str(result.substatus))
        progress.explain(result)
    table = progress.summary_table()
    lines = table.splitlines()
    at = lines.index("Unknowns by provider and cause:")
    group_lines = lines[at + 1 :]
    assert len(group_lines) == 3
    assert group_lines[0].split()[:3] == ["3", "zoho", "greylisted"]
    assert 'e.g. "450 4.2.0 <address>: Recipient address rejected: Greylisted"' in group_lines[0]
    assert "greylist_max_wait" in group_lines[0]
    assert "socks_proxy" in group_lines[2]
    # The existing lines stay as they were.
    assert lines[0].startswith("EV_Status") and any(line.startswith("total") for line in lines)
    assert any(line.startswith("sources: ") for line in lines)
    with caplog.at_level(logging.INFO, logger="test-explain"):
        progress.log_summary()
    progress.write_report(tmp_path / "report.json")
    written = (tmp_path / "report.json").read_text()
    report = json.loads(written)
    assert report["unknowns"][0]["count"] == 3 and "smtp" not in report
    for text in (table, written, caplog.text, json.dumps(progress.snapshot())):
        assert "@" not in text
        for name in ("alice", "bob", "carol", "dave"):
            assert name not in text


def test_summary_and_report_with_engine_counters() -> None:
    progress = _progress()
    progress.engine_counters = lambda: {
        "greylisted": 12,
        "greylist_resolved": 11,
        "catch_all_probes": 40,
        "catch_all_skipped": 25,
        "catch_all_cached": 30,
        "something_else": 7,
    }
    snap = progress.snapshot()
    assert snap["smtp"] == {
        "greylisted": 12,
        "greylist_resolved": 11,
        "catch_all_probes": 40,
        "catch_all_skipped": 25,
        "catch_all_cached": 30,
        "something_else": 7,
    }
    assert snap["unknowns"] == []
    assert progress.summary_table().splitlines()[-1] == (
        "SMTP: greylisted 12, resolved on retry 11; catch-all probes 40 "
        "(skipped by provider rule 25, known from the domain cache 30)"
    )
    progress.engine_counters = lambda: {"catch_all_probes": 4}
    assert progress.summary_table().splitlines()[-1] == "SMTP: catch-all probes 4"
    progress.engine_counters = lambda: {"greylisted": 2}
    assert progress.summary_table().splitlines()[-1] == "SMTP: greylisted 2"
    progress.engine_counters = lambda: {"unrelated": 2}
    assert "SMTP:" not in progress.summary_table()
    assert progress.snapshot()["smtp"] == {"unrelated": 2}


def test_engine_counters_that_fail_cost_only_the_smtp_figures() -> None:
    progress = _progress()

    def broken() -> dict[str, int]:
        raise RuntimeError("gone")

    progress.engine_counters = broken
    assert progress.snapshot()["smtp"] == {}
    assert "SMTP:" not in progress.summary_table()
