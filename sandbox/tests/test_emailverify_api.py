"""The EmailVerify.io fake over real sockets: answers per world behaviour, errors, credits."""

from __future__ import annotations

import pytest
import requests
from cio_sandbox import Sandbox

# World behaviour (case, mailbox state) -> what EmailVerify.io says, in its own vocabulary.
EXPECTED = [
    ("normal", "exists", "valid", "permitted"),
    ("normal", "unknown", "invalid", "mailbox_not_found"),
    ("normal", "disabled", "invalid", "mailbox_disabled"),
    ("normal", "full", "invalid", "mailbox_quota_exceeded"),
    ("hard_bounce", "exists", "valid", "permitted"),  # an outside verifier has no bounce history
    ("hard_bounce", "unknown", "invalid", "mailbox_not_found"),
    ("bad_syntax", "exists", "invalid", "failed_syntax_check"),
    ("nxdomain", "exists", "invalid", "no_dns_entries"),
    ("typo", "exists", "invalid", "no_dns_entries"),
    ("no_mx_no_a", "exists", "invalid", "no_dns_entries"),
    ("null_mx", "exists", "invalid", "null_mx"),
    ("disposable", "exists", "do_not_mail", "disposable"),
    ("catch_all", "exists", "catch-all", "accept_all"),
    ("greylist", "exists", "unknown", "greylisted"),
    ("tarpit", "exists", "unknown", "timeout_exceeded"),
    ("policy_block", "exists", "unknown", "antispam_system"),
    ("drop_after_banner", "exists", "unknown", "mail_server_did_not_respond"),
    ("servfail", "exists", "unknown", "mail_server_did_not_respond"),
    ("provider_yahoo", "exists", "unknown", "provider_unverifiable"),
]


@pytest.fixture
def sb(sandbox_faults_reset: Sandbox) -> Sandbox:
    return sandbox_faults_reset


def validate(sb: Sandbox, email: str | None, key: str | None = None) -> requests.Response:
    params = {"key": key or sb.keys.emailverify_api_key}
    if email is not None:
        params["email"] = email
    return requests.get(f"{sb.emailverify_url}/api/v1/validate", params=params)


@pytest.mark.parametrize(("case", "mailbox", "status", "sub_status"), EXPECTED)
def test_answers_follow_the_world(
    sb: Sandbox, case: str, mailbox: str, status: str, sub_status: str
) -> None:
    email = sb.world.address_for(case, mailbox)
    r = validate(sb, email)
    assert r.status_code == 200
    assert r.json() == {"email": email, "status": status, "sub_status": sub_status}


def test_role_accounts_and_non_addresses(sb: Sandbox) -> None:
    domain = next(name for name, d in sb.world.domains.items() if d.kind == "normal")
    assert validate(sb, f"info@{domain}").json()["status"] == "role_based"
    assert validate(sb, f"Support@{domain.upper()}").json()["sub_status"] == "role_based"
    for junk in ("not-an-address", "@", "two@@signs.example", f'quote"@{domain}', f"a b@{domain}"):
        answer = validate(sb, junk).json()
        assert (answer["status"], answer["sub_status"]) == ("invalid", "failed_syntax_check"), junk
    assert validate(sb, "someone@never-registered.example").json()["sub_status"] == "no_dns_entries"


SUBSTATUS_ANSWERS = {
    "mailbox_exists": ("valid", "permitted"),
    "role_based": ("role_based", "role_based"),
    "invalid_syntax": ("invalid", "failed_syntax_check"),
    "domain_not_found": ("invalid", "no_dns_entries"),
    "no_mx_record": ("invalid", "no_dns_entries"),
    "null_mx": ("invalid", "null_mx"),
    "mailbox_not_found": ("invalid", "mailbox_not_found"),
    "mailbox_disabled": ("invalid", "mailbox_disabled"),
    "mailbox_full": ("invalid", "mailbox_quota_exceeded"),
    "disposable_domain": ("do_not_mail", "disposable"),
    "catch_all": ("catch-all", "accept_all"),
    "greylisted": ("unknown", "greylisted"),
    "smtp_timeout": ("unknown", "timeout_exceeded"),
    "smtp_blocked": ("unknown", "antispam_system"),
    "smtp_connection_failed": ("unknown", "mail_server_did_not_respond"),
    "dns_error": ("unknown", "mail_server_did_not_respond"),
    "provider_unverifiable": ("unknown", "provider_unverifiable"),
}


def test_a_sample_of_the_world_answers_like_its_ground_truth(sb: Sandbox) -> None:
    with requests.Session() as session:
        for person in list(sb.world.iter_people())[::13]:
            if person.email is None:
                continue
            params = {"key": sb.keys.emailverify_api_key, "email": person.email}
            answer = session.get(f"{sb.emailverify_url}/api/v1/validate", params=params).json()
            got = (answer["status"], answer["sub_status"])
            if person.truth.substatus == "hard_bounce_history":
                assert got[0] in ("valid", "invalid", "role_based"), person.index
            else:
                assert got == SUBSTATUS_ANSWERS[person.truth.substatus], (
                    person.index,
                    person.truth,
                )


def test_key_and_request_errors(sb: Sandbox) -> None:
    r = validate(sb, "a@b.example", key="wrong")
    assert (r.status_code, r.json()) == (401, {"error": "Invalid API Key"})
    r = validate(sb, None)
    assert (r.status_code, r.json()) == (400, {"error": "Invalid Request"})
    r = requests.get(f"{sb.emailverify_url}/api/v2/check-account-balance", params={"key": "wrong"})
    assert r.status_code == 401
    assert sb.obs.requests[("emailverify", "GET /api/v1/validate")] == 2


def test_credits_run_out_and_unknown_answers_are_free(sb: Sandbox) -> None:
    balance_url = f"{sb.emailverify_url}/api/v2/check-account-balance"
    key = {"key": sb.keys.emailverify_api_key}
    assert requests.get(balance_url, params=key).json()["api_status"] == "enabled"
    sb.obs.faults.emailverify_credits = 2
    assert requests.get(balance_url, params=key).json() == {
        "api_status": "enabled",
        "available_credits": 2,
    }
    valid, greylisted = sb.world.address_for("normal"), sb.world.address_for("greylist")
    assert validate(sb, valid).status_code == 200
    assert validate(sb, greylisted).json()["status"] == "unknown"
    assert sb.obs.faults.emailverify_credits == 1
    assert validate(sb, valid).status_code == 200
    r = validate(sb, valid)
    assert (r.status_code, r.json()) == (402, {"error": "0 credits remaining"})
    assert validate(sb, greylisted).status_code == 402
    assert requests.get(balance_url, params=key).json()["available_credits"] == 0
