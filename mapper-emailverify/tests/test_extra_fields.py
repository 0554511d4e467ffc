"""The opt-in fields for marketers (`extra_fields`): the did-you-mean suggestion's quality, the
provider vocabulary, the setting, and what a schema and a record get (nothing new when off)."""

from __future__ import annotations

import pytest
from cio_sandbox.world_data import PROVIDER_NAMES as SANDBOX_PROVIDERS
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mapper_emailverify.engine import lists, providers
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.stream_map.extra_fields import (
    EXTRA_FIELDS,
    OTHER,
    PROVIDER_VALUES,
    ExtraFields,
    provider_value,
    suggested_address,
)
from mapper_emailverify.stream_map.freshness import FieldNames
from mapper_emailverify.stream_map.plan import with_verdict_fields
from mapper_emailverify.stream_map.settings import CONFIG_SCHEMA, MapperSettings


# ------------------------------------------------------------------------------ did you mean
@pytest.mark.parametrize(
    ("domain", "suggestion"),
    [
        ("gmial.com", "gmail.com"),
        ("gmai.com", "gmail.com"),
        ("gamil.com", "gmail.com"),
        ("gnail.com", "gmail.com"),
        ("gmaill.com", "gmail.com"),
        ("ggmail.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("gmail.cmo", "gmail.com"),
        ("gmail.co", "gmail.com"),
        ("gmail.comm", "gmail.com"),
        ("gmial.con", "gmail.com"),
        ("GMIAL.COM", "gmail.com"),
        ("googlemial.com", "googlemail.com"),
        ("yaho.com", "yahoo.com"),
        ("yahooo.com", "yahoo.com"),
        ("tahoo.com", "yahoo.com"),
        ("yahoo.cm", "yahoo.com"),
        ("yhaoo.fr", "yahoo.fr"),
        ("hotmial.com", "hotmail.com"),
        ("hotmal.com", "hotmail.com"),
        ("hotmail.con", "hotmail.com"),
        ("hotmial.co.uk", "hotmail.co.uk"),
        ("hotmai.fr", "hotmail.fr"),
        ("outlok.com", "outlook.com"),
        ("outllok.com", "outlook.com"),
        ("iclod.com", "icloud.com"),
        ("icoud.com", "icloud.com"),
        ("aol.con", "aol.com"),
        ("aol.co", "aol.com"),
        ("msn.con", "msn.com"),
        ("protonmial.com", "protonmail.com"),
        ("comcast.nte", "comcast.net"),
    ],
)
def test_common_typos_of_big_providers_get_their_domain(domain: str, suggestion: str) -> None:
    assert lists.did_you_mean(domain) == suggestion


@pytest.mark.parametrize(
    "domain",
    [
        # the providers themselves, and their sister domains
        *("gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com"),
        *("rocketmail.com", "hotmail.co.uk", "hotmail.de", "outlook.com", "outlook.de"),
        *("live.com", "live.de", "msn.com", "icloud.com", "me.com", "mac.com", "aol.com"),
        *("gmx.de", "gmx.net", "web.de", "mail.com", "email.com", "mail.ru", "mail.de"),
        *("proton.me", "comcast.net", "fastmail.com", "zoho.com", "yandex.com", "qq.com"),
        # companies one or two letters away from a provider
        *("comcast.com", "ge.com", "mi.com", "aon.com", "man.com", "gmc.com", "grail.com"),
        *("cloud.com", "hotmart.com", "mailo.com", "olive.com", "yahoo-inc.com", "google.com"),
        *("microsoft.com", "apple.com", "amazon.com", "acme.co", "northwind-3.example"),
        # a provider's name under another suffix is not ours to correct
        *("gmail.de", "hotmail.co.jp", "yahoo.ro"),
        *("", "gmail", ".com", "localhost"),
    ],
)
def test_legitimate_domains_get_no_suggestion(domain: str) -> None:
    assert lists.did_you_mean(domain) is None


def test_every_free_domain_and_provider_domain_is_left_alone() -> None:
    free = lists._lines("free_domains.txt")
    exact = {d for rule in providers.RULES for d in rule.domains if not d.endswith(".")}
    assert [d for d in sorted(free | exact) if lists.did_you_mean(d)] == []


_FUZZY = [t for t in lists.TYPO_TARGETS if t.fuzzy]


@st.composite
def keyboard_typos(draw: st.DrawFn) -> tuple[str, str]:
    """(a one-slip typo of a big provider's domain, that domain)."""
    target = draw(st.sampled_from(_FUZZY))
    name = target.name
    at = draw(st.integers(1, len(name) - 1))  # the first letter is kept
    kind = draw(st.sampled_from(["swap", "drop", "double", "neighbour"]))
    if kind == "swap":
        typo = name[: at - 1] + name[at] + name[at - 1] + name[at + 1 :]
    elif kind == "drop":
        typo = name[:at] + name[at + 1 :]
    elif kind == "double":
        typo = name[: at + 1] + name[at] + name[at + 1 :]
    else:
        near = sorted(lists.keyboard_neighbours(name[at]))
        typo = name[:at] + draw(st.sampled_from(near)) + name[at + 1 :]
    suffix = draw(
        st.sampled_from(
            [target.suffix, "con", "cmo"] if target.suffix == "com" else [target.suffix]
        )
    )
    return f"{typo}.{suffix}", f"{name}.{target.suffix}"


@settings(max_examples=300, deadline=None)
@given(keyboard_typos())
def test_property_one_keyboard_slip_is_corrected(case: tuple[str, str]) -> None:
    typo, meant = case
    assume(typo.partition(".")[0] != meant.partition(".")[0] or typo != meant)
    names = lists._known()[1]
    assume(typo.partition(".")[0] not in names)  # the slip made another real name (ymail)
    assert lists.did_you_mean(typo) == meant


def _distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z0-9-]{3,14}\.(com|net|de|co\.uk|io|example)", fullmatch=True))
def test_property_far_names_get_nothing_and_suggestions_are_final(domain: str) -> None:
    name = domain.partition(".")[0]
    suggestion = lists.did_you_mean(domain)
    if all(_distance(name, t.name) > 2 for t in lists.TYPO_TARGETS):
        assert suggestion is None
    if suggestion is not None:
        assert suggestion in lists._known()[0] or suggestion.partition(".")[0] in lists._known()[1]
        assert lists.did_you_mean(suggestion) is None


def test_the_suggestion_is_the_whole_address_with_the_local_part_as_written() -> None:
    assert suggested_address("Jane.Doe+news@Gmial.com") == "Jane.Doe+news@gmail.com"
    assert suggested_address(" jane@gmail.con ") == "jane@gmail.com"
    assert suggested_address("jane@gmail.com") is None
    assert suggested_address("not an address") is None


# ------------------------------------------------------------------------------ the provider
def test_provider_vocabulary_is_the_rule_names_then_other() -> None:
    assert (*providers.NAMES, "other") == PROVIDER_VALUES
    assert all(v.isascii() and v == v.lower() and " " not in v for v in PROVIDER_VALUES)
    assert set(SANDBOX_PROVIDERS) <= set(PROVIDER_VALUES)
    assert OTHER not in providers.NAMES


@pytest.mark.parametrize(
    ("domain", "mx", "substatus", "expected"),
    [
        ("gmail.com", (), "mailbox_exists", "gmail"),
        ("yahoo.co.uk", (), "provider_unverifiable", "yahoo"),
        ("hotmail.fr", (), "mailbox_exists", "outlook"),
        ("acme.example", ("aspmx.l.google.com",), "mailbox_exists", "google_workspace"),
        (
            "acme.example",
            ("acme-example.mail.protection.outlook.com",),
            "catch_all",
            "microsoft365",
        ),
        ("acme.example", ("mx.acme.example",), "mailbox_exists", "other"),
        ("acme.example", (), "mailbox_exists", None),  # MX unknown (cached, remote backend)
        ("gone.example", (), "domain_not_found", None),
        ("gone.example", (".",), "null_mx", None),
    ],
)
def test_provider_value(
    domain: str, mx: tuple[str, ...], substatus: str, expected: str | None
) -> None:
    assert provider_value(domain, mx, substatus) == expected


# ------------------------------------------------------------------------------ the setting
def test_the_setting_defaults_to_none_and_takes_names_with_or_without_the_prefix() -> None:
    assert MapperSettings.from_config({}).extras == ()
    assert "extra_fields" in CONFIG_SCHEMA["properties"]
    chosen = MapperSettings.from_config({"extra_fields": ["didyoumean", "EV_Provider", "Free"]})
    assert chosen.extras == ("Provider", "Free", "DidYouMean")
    from_env = MapperSettings.from_config({"extra_fields": "Role,Provider", "field_prefix": "X_"})
    assert from_env.extras == ("Provider", "Role")
    assert MapperSettings.from_config(
        {"extra_fields": ["X_Role"], "field_prefix": "X_"}
    ).extras == ("Role",)
    with pytest.raises(ConfigError, match="extra_fields: 'Providers' is not one of Provider"):
        MapperSettings.from_config({"extra_fields": ["Providers"]})
    assert set(EXTRA_FIELDS) == {"Provider", "Free", "Role", "DidYouMean"}


SCHEMA = {"type": "SCHEMA", "stream": "people", "schema": {"properties": {"email": {}}}}


def test_with_nothing_selected_the_schema_and_records_are_as_before() -> None:
    names = FieldNames.for_prefix("EV_")
    off = ExtraFields("EV_")
    assert not off and off.properties() == {}
    assert with_verdict_fields(SCHEMA, names, off.properties()) == with_verdict_fields(
        SCHEMA, names
    )
    assert list(with_verdict_fields(SCHEMA, names)["schema"]["properties"]) == [
        "email",
        "EV_Status",
        "EV_SubStatus",
        "EV_Validation_Timestamp",
    ]


def test_selected_fields_get_the_prefix_in_schema_and_records() -> None:
    extras = ExtraFields("X_", ["DidYouMean", "Role", "Free", "Provider"])
    properties = with_verdict_fields(SCHEMA, FieldNames.for_prefix("X_"), extras.properties())[
        "schema"
    ]["properties"]
    assert properties["X_Provider"] == {"type": ["string", "null"]}
    assert properties["X_Free"] == properties["X_Role"] == {"type": ["boolean", "null"]}
    assert properties["X_DidYouMean"] == {"type": ["string", "null"]}
    record: dict[str, object] = {}
    extras.write(record, "Info@Gmial.com", "domain_not_found")
    assert record == {
        "X_Provider": None,
        "X_Free": False,
        "X_Role": True,
        "X_DidYouMean": "Info@gmail.com",
    }
    extras.write(record, "jane@yahoo.fr", "provider_unverifiable")
    assert record == {"X_Provider": "yahoo", "X_Free": True, "X_Role": False, "X_DidYouMean": None}
    extras.write(record, "not-an-address", "invalid_syntax")
    assert set(record.values()) == {None}


def test_a_passed_on_record_gets_the_provider_learnt_kept_or_carried() -> None:
    kept = {"kept.example": "microsoft365"}
    extras = ExtraFields("EV_", ["Provider"], domain_provider=kept.get)
    record: dict[str, object] = {}
    extras.write_verified(record, "a@ws.example", "mailbox_exists", ["aspmx.l.google.com"])
    assert record["EV_Provider"] == "google_workspace"
    extras.write(record, "b@ws.example", "mailbox_exists")  # learnt this run
    assert record["EV_Provider"] == "google_workspace"
    extras.write(record, "c@kept.example", "catch_all")  # kept in cache_path
    assert record["EV_Provider"] == "microsoft365"
    carried = {"attributes": {"EV_Provider": "zoho"}}
    extras.write(carried, "d@elsewhere.example", "mailbox_exists")
    assert carried["EV_Provider"] == "zoho"
    flattened = {"attributes__EV_Provider": "other", "attributes": None}
    extras.write(flattened, "e@elsewhere.example", "mailbox_exists")
    assert flattened["EV_Provider"] == "other"
    odd = {"attributes": {"EV_Provider": "Gmail!"}}  # not a value of ours
    extras.write(odd, "f@elsewhere.example", "mailbox_exists")
    assert odd["EV_Provider"] is None
