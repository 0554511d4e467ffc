"""Provider rules (`engine/providers.py`): who a domain's mail provider is, and what that provider's
replies mean. One case per provider row: adding a provider is one row and one case here.

The same rules against the sandbox's provider look-alikes (real SMTP on loopback, named by the real
MX host names) are in `test_provider_world.py`.
"""

from __future__ import annotations

import pytest
from mapper_emailverify.engine.config import VerifierConfig
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.engine.providers import NAMES, RULES, identify, unverifiable_provider
from mapper_emailverify.engine.smtp.replies import Outcome, Reply, named_delay, read_rcpt

# provider: (a domain it serves, its MX host, a reply at RCPT, what the reply means there,
# what the generic rules alone would make of it (None: the same)).
CASES: dict[str, tuple[str, str, str, Outcome | None, Outcome | None]] = {
    "gmail": (
        "gmail.com",
        "gmail-smtp-in.l.google.com",
        "451 4.3.0 Multiple destination domains per transaction is unsupported. Please try again.",
        Outcome.TOO_MANY_RECIPIENTS,
        Outcome.DEFERRED,
    ),
    "google_workspace": (
        "northwind.example",
        "aspmx.l.google.com",
        "452 4.5.3 Domain policy size per transaction exceeded, please try this recipient in a "
        "separate transaction",
        Outcome.TOO_MANY_RECIPIENTS,
        None,
    ),
    "outlook": (
        "hotmail.com",
        "hotmail-com.olc.protection.outlook.com",
        "452 4.5.3 Recipients belong to multiple regions",
        Outcome.TOO_MANY_RECIPIENTS,
        None,
    ),
    "microsoft365": (
        "contoso.example",
        "contoso-example.mail.protection.outlook.com",
        "550 5.7.504 Recipient address rejected: Access denied",
        Outcome.NOT_FOUND,
        Outcome.BLOCKED,
    ),
    "yahoo": ("aol.com", "mx-aol.mail.gm0.yahoodns.net", "250 recipient <x> ok", None, None),
    "mailru": ("inbox.ru", "mxs.mail.ru", "250 Go ahead", None, None),
    "yandex": (
        "yandex.ru",
        "mx.yandex.net",
        "550 5.7.1 No such user!",
        Outcome.NOT_FOUND,
        None,
    ),
    "zoho": (
        "zohomail.com",
        "mx.zoho.com",
        "451 4.7.1 Greylisted, try again after some time",
        None,
        Outcome.DEFERRED,
    ),
    "icloud": (
        "icloud.com",
        "mx01.mail.icloud.com",
        "550 5.1.1 <x@icloud.com>: inactive email address (in reply to RCPT TO command)",
        None,
        Outcome.DISABLED,
    ),
    "gmx": (
        "gmx.net",
        "mx00.gmx.net",
        "550 Requested action not taken: User is unknown",
        Outcome.NOT_FOUND,
        Outcome.NOT_FOUND,
    ),
    "proton": (
        "proton.me",
        "mail.protonmail.ch",
        "550 5.1.1 Address does not exist",
        None,
        Outcome.NOT_FOUND,
    ),
}


def _reply(text: str) -> Reply:
    return Reply(int(text[:3]), (text[4:],))


def test_every_provider_row_has_a_case() -> None:
    assert set(CASES) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_provider_is_found_by_domain_and_by_mx(name: str) -> None:
    domain, mx, *_ = CASES[name]
    found = identify(domain, [mx])
    assert found is not None and found.name == name
    by_mx = identify("some-company.example", [mx])
    if name in ("gmail",):  # consumer Gmail is known by its domain; its MX is Google's
        assert by_mx is not None and by_mx.name == "google_workspace"
    else:
        assert by_mx is not None and by_mx.name == name


@pytest.mark.parametrize("name", NAMES)
def test_provider_reads_its_own_replies(name: str) -> None:
    domain, mx, text, outcome, generic = CASES[name]
    rule = identify(domain, [mx])
    assert rule is not None
    reply = _reply(text)
    reading = rule.read(reply)
    if outcome is None:
        assert reading is None  # the generic rules read it right
    else:
        assert reading is not None and reading.outcome is outcome
        assert reading.family.startswith("0 provider rule") and name in reading.rule
    if generic is not None:
        assert read_rcpt(reply).outcome is generic


def test_prefix_domains_only_match_public_suffixes() -> None:
    assert identify("yahoo.co.uk") is not None
    assert identify("hotmail.com.br") is not None
    assert identify("live.acme.example") is None
    assert identify("yahoo.internal.example") is None
    assert identify("mx.yandex.net") is None  # a host name is not a served domain


def test_unverifiable_providers_name_themselves() -> None:
    assert unverifiable_provider("yahoo.com", []) is not None
    assert unverifiable_provider("company.example", ["mxs.mail.ru"]) is not None
    assert unverifiable_provider("gmail.com", ["gmail-smtp-in.l.google.com"]) is None


def test_rule_table_is_consistent() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    outlook = next(rule for rule in RULES if rule.name == "outlook")
    assert outlook.rcpt_per_session == 1 and not outlook.catch_all_probe
    gmail = next(rule for rule in RULES if rule.name == "gmail")
    assert not gmail.catch_all_probe
    # A Microsoft 4.5.3 on a second recipient is a session limit at either Microsoft row.
    for name in ("outlook", "microsoft365"):
        rule = next(rule for rule in RULES if rule.name == name)
        reading = rule.read(_reply("452 4.5.3 Too many recipients"))
        assert reading is not None and reading.outcome is Outcome.TOO_MANY_RECIPIENTS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (
            "450 4.2.0 <a@b.example>: Recipient address rejected: Greylisted, please try again in "
            "7 seconds",
            7.0,
        ),
        ("451 4.7.1 Please retry in 5 minutes", 300.0),
        ("451 Greylisted for 300 seconds (see http://example.org/help)", 300.0),
        ("451 4.7.1 Greylisted, try again after some time", None),
        ("451 4.7.1 Try again later", None),
        ("550 5.1.1 try again in 5 minutes", None),  # not a deferral
        ("451 4.7.1 blocked, try again in 48 hours", None),  # no greylisting window
    ],
)
def test_named_delay(text: str, seconds: float | None) -> None:
    assert named_delay(_reply(text)) == seconds


def test_backend_by_provider_is_checked() -> None:
    with pytest.raises(ConfigError, match="emailverify_api_key"):
        VerifierConfig.from_settings({"backend_by_provider": {"yahoo": "emailverify"}})
    with pytest.raises(ConfigError, match="unknown provider 'yahooo'"):
        VerifierConfig.from_settings(
            {"backend_by_provider": {"yahooo": "emailverify"}, "emailverify_api_key": "k"}
        )
    with pytest.raises(ConfigError, match="must be one of"):
        VerifierConfig.from_settings({"backend_by_provider": {"yahoo": "zerobounce"}})
    config = VerifierConfig.from_settings(
        {"backend_by_provider": {"yahoo": "emailverify"}, "emailverify_api_key": "k"}
    )
    assert config.backend_for("yahoo") == "emailverify"
    assert config.backend_for("gmail") == config.backend_for(None) == "builtin"
    assert config.uses_builtin and config.uses_remote
