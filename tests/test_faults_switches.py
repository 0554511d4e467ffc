"""The sandbox's fault switches that the end-to-end fault tests rely on do what they say.

DNS: SERVFAIL and unanswered queries for a share of queries or for chosen names. SMTP: greylisting,
tarpits, dropped connections and 421 on hosts that are otherwise healthy. Pipelines: a batch
rejected with a strict-mode 400 naming the call, and a request processed whose answer never comes.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
from cio_sandbox import Sandbox, World


@pytest.fixture
def sb(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(World(seed=31, people=200))


def normal_mail(sb: Sandbox) -> tuple[str, str]:
    """(address of an existing mailbox on a healthy host, that host's ip)."""
    address = sb.world.address_for("normal")
    domain = sb.world.domains[address.rpartition("@")[2].lower()]
    hostname = min(domain.mx)[1]
    ip = next(h.ip for h in sb.world.smtp_hosts.values() if h.hostname == hostname)
    return address, ip


def dns_query(sb: Sandbox, name: str, timeout: float = 0.5) -> dns.message.Message:
    host, port = sb.dns_nameserver.split(":")
    return dns.query.udp(dns.message.make_query(name, "MX"), host, port=int(port), timeout=timeout)


def rcpt(sb: Sandbox, ip: str, address: str, timeout: float = 3.0) -> tuple[int, bytes]:
    with smtplib.SMTP(ip, sb.smtp_port, local_hostname="probe.example", timeout=timeout) as smtp:
        smtp.ehlo()
        smtp.mail("probe@verifier.sandbox.example")
        return smtp.rcpt(address)


# ---------------------------------------------------------------------------------------- DNS
def test_dns_servfail_share_and_names(sb: Sandbox) -> None:
    domain = sb.world.address_for("normal").rpartition("@")[2].lower()
    assert dns_query(sb, domain).rcode() == dns.rcode.NOERROR
    sb.obs.faults.dns_servfail_rate = 1.0
    assert dns_query(sb, domain).rcode() == dns.rcode.SERVFAIL
    sb.obs.faults.dns_fault_names = frozenset({"elsewhere.example"})
    assert dns_query(sb, domain).rcode() == dns.rcode.NOERROR, "names outside the set are healthy"
    sb.obs.faults.dns_fault_names = frozenset({domain.upper()})
    assert dns_query(sb, domain).rcode() == dns.rcode.SERVFAIL
    sb.obs.faults.dns_servfail_rate = 0.3
    sb.obs.faults.dns_fault_names = frozenset()
    rcodes = [dns_query(sb, domain).rcode() for _ in range(60)]
    assert 5 < rcodes.count(dns.rcode.SERVFAIL) < 40
    sb.obs.reset_faults()
    assert dns_query(sb, domain).rcode() == dns.rcode.NOERROR


def test_dns_drop_leaves_the_resolver_waiting(sb: Sandbox) -> None:
    domain = sb.world.address_for("normal").rpartition("@")[2].lower()
    sb.obs.faults.dns_drop_rate = 1.0
    with pytest.raises(dns.exception.Timeout):
        dns_query(sb, domain, timeout=0.3)
    assert sb.obs.faults_injected["dns_drop"] == 1
    sb.obs.faults.dns_drop_rate = 0.0
    assert dns_query(sb, domain).rcode() == dns.rcode.NOERROR


# ---------------------------------------------------------------------------------------- SMTP
def test_smtp_session_faults_on_a_healthy_host(sb: Sandbox) -> None:
    address, ip = normal_mail(sb)
    assert rcpt(sb, ip, address)[0] == 250
    faults = sb.obs.faults
    faults.smtp_fault_rate = 1.0

    faults.smtp_fault = "greylist"
    assert rcpt(sb, ip, address)[0] == 451

    faults.smtp_fault = "busy_421"
    with pytest.raises(smtplib.SMTPConnectError) as busy:
        smtplib.SMTP(ip, sb.smtp_port, timeout=3)
    assert busy.value.smtp_code == 421

    faults.smtp_fault = "disconnect"
    with pytest.raises(smtplib.SMTPServerDisconnected):
        rcpt(sb, ip, address)

    faults.smtp_fault, faults.smtp_tarpit_seconds = "tarpit", 2.0
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        smtplib.SMTP(ip, sb.smtp_port, timeout=0.5)

    faults.smtp_fault_rate = 0.0
    assert rcpt(sb, ip, address)[0] == 250
    assert sb.obs.faults_injected["smtp_greylist"] == 1


def test_smtp_fault_rate_is_a_share_of_sessions(sb: Sandbox) -> None:
    address, ip = normal_mail(sb)
    sb.obs.faults.smtp_fault, sb.obs.faults.smtp_fault_rate = "greylist", 0.5
    codes = [rcpt(sb, ip, address)[0] for _ in range(30)]
    assert 3 < codes.count(451) < 27 and codes.count(250) + codes.count(451) == 30


# ---------------------------------------------------------------------------------------- Pipelines
def identify(user_id: str) -> dict[str, object]:
    return {
        "type": "identify",
        "userId": user_id,
        "traits": {"EV_Status": "Valid"},
        "messageId": f"m-{user_id}",
    }


def test_pipelines_rejects_a_batch_naming_the_call(sb: Sandbox) -> None:
    people = [p for p in sb.world.iter_people() if p.id][:3]
    sb.obs.faults.pipelines_reject_ids = frozenset({people[1].id.upper()})
    sb.obs.faults.pipelines_strict_names_items = True  # the real 400's format is unpublished
    body = {"batch": [identify(p.id) for p in people]}
    with httpx.Client(base_url=sb.pipelines_url, auth=(sb.keys.pipelines_api_key, "")) as client:
        answer = client.post("/v1/batch", json=body, headers={"X-Strict-Mode": "1"})
        assert answer.status_code == 400
        assert answer.json()["meta"]["errors"] == ["batch[1]: rejected (fault injection)"]
        assert sb.obs.landed_copy() == {}, "a strict rejection lands nothing"
        answer = client.post(
            "/v1/batch", json={"batch": [identify(people[0].id)]}, headers={"X-Strict-Mode": "1"}
        )
        assert answer.status_code == 200
    assert list(sb.obs.landed_copy()) == [people[0].cio_id]


def test_pipelines_lost_answer_lands_once(sb: Sandbox) -> None:
    person = next(p for p in sb.world.iter_people() if p.id)
    sb.obs.faults.pipelines_lost_answer_rate = 1.0
    sb.obs.faults.pipelines_timeout_seconds = 2.0
    with httpx.Client(base_url=sb.pipelines_url, auth=(sb.keys.pipelines_api_key, "")) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/batch", json={"batch": [identify(person.id)]}, timeout=0.3)
        sb.obs.faults.pipelines_lost_answer_rate = 0.0
        assert client.post("/v1/batch", json={"batch": [identify(person.id)]}).status_code == 200
    assert sb.obs.writes[person.cio_id] == 1, "the replay carries the same messageId"
