"""Authoritative DNS for the world's zone, over UDP and TCP on one loopback port.

A verifier resolves MX, A and AAAA records here as it would on the internet: authoritative
answers, NXDOMAIN and NODATA carrying an SOA (so negative caching works), SERVFAIL for broken
zones, and slow zones answered late without holding up anyone else's queries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import struct
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .loopback import bind_on_one_port
from .observe import Observatory
from .world import World
from .world_data import DNS_TTL

log = logging.getLogger(__name__)

SOA_TEXT = f"ns1.sandbox.invalid. hostmaster.sandbox.invalid. 1 3600 600 86400 {DNS_TTL}"
CLASSIC_UDP_SIZE = 512  # RFC 1035 limit for a query without EDNS
TCP_IDLE_SECONDS = 10.0  # RFC 7766: servers close idle connections after seconds, not minutes


@functools.lru_cache(maxsize=8192)
def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


class ZoneAnswers:
    """Turns one query packet into its answer packet and the delay before sending it."""

    def __init__(self, world: World, obs: Observatory) -> None:
        self.world = world
        self.obs = obs
        self._ancestors: set[str] = set()  # every proper ancestor of a zone name
        self._ancestors_of = -1  # the zone size they were computed for
        self._fault_rng = random.Random(f"{world.seed}:dns-faults")  # repeatable per world

    def answer(self, wire: bytes, *, udp: bool) -> tuple[bytes | None, float]:
        """The wire answer (None: stay silent, as for garbage) and the seconds to wait first."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # any malformed packet is dropped, as real servers do
            return None, 0.0
        if query.flags & dns.flags.QR:
            return None, 0.0
        try:
            response, delay = self._respond(query)
            if response is None:  # the drop fault: no answer at all
                return None, 0.0
            limit = (query.payload if query.edns >= 0 else CLASSIC_UDP_SIZE) if udp else 65535
            try:
                return response.to_wire(max_size=max(limit, CLASSIC_UDP_SIZE)), delay
            except dns.exception.TooBig:
                truncated = dns.message.make_response(query)
                truncated.flags |= dns.flags.TC | (response.flags & dns.flags.AA)
                truncated.set_rcode(response.rcode())
                return truncated.to_wire(), delay
        except Exception:  # one odd query must never stop the server
            log.debug("DNS query could not be answered", exc_info=True)
            return None, 0.0

    def _respond(self, query: dns.message.Message) -> tuple[dns.message.Message | None, float]:
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response, 0.0
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response, 0.0
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        self.obs.count_dns(name, dns.rdatatype.to_text(question.rdtype))
        delay = self._delay(name)
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response, delay
        if self._under(name, self.world.dns_servfail):
            response.set_rcode(dns.rcode.SERVFAIL)
            return response, delay
        fault = self._fault(name)
        if fault == "drop":
            return None, 0.0
        if fault == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response, delay
        response.flags |= dns.flags.AA
        records = self.world.zone.get(name)
        if records is not None:
            for rdtype_text, texts in records.items():
                rdtype = dns.rdatatype.from_text(rdtype_text)
                if texts and question.rdtype in (rdtype, dns.rdatatype.ANY):
                    rdatas = [_rdata(rdtype, t) for t in texts]
                    response.answer.append(
                        dns.rrset.from_rdata_list(question.name, DNS_TTL, rdatas)
                    )
        apex, soa = self._apex(name), _rdata(dns.rdatatype.SOA, SOA_TEXT)
        if question.rdtype in (dns.rdatatype.SOA, dns.rdatatype.ANY) and apex == question.name:
            # Each world domain is the apex of its own zone.
            response.answer.append(dns.rrset.from_rdata_list(question.name, DNS_TTL, [soa]))
        if response.answer:
            return response, delay
        if records is None and not self._exists_below(name):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(dns.rrset.from_rdata_list(apex, DNS_TTL, [soa]))
        return response, delay

    def _fault(self, name: str) -> str | None:
        """The fault switches' verdict for one query: "drop", "servfail" or None."""
        faults = self.obs.faults
        drop, servfail = faults.dns_drop_rate, faults.dns_servfail_rate
        if drop <= 0 and servfail <= 0:
            return None  # no dice drawn: switching DNS faults on never shifts another server's
        if faults.dns_fault_names and not self._under(
            name, {n.lower().rstrip(".") for n in faults.dns_fault_names}
        ):
            return None
        if drop > 0 and (drop >= 1 or self._fault_rng.random() < drop):
            self.obs.count_fault("dns_drop")
            return "drop"
        if servfail > 0 and (servfail >= 1 or self._fault_rng.random() < servfail):
            self.obs.count_fault("dns_servfail")
            return "servfail"
        return None

    def _delay(self, name: str) -> float:
        """A slow zone is slow for every name in it; the latency fault adds to every answer."""
        zone_delay = 0.0
        delays = self.world.dns_delay
        if delays:
            labels = name.split(".")
            zone_delay = max(
                (delays.get(".".join(labels[i:]), 0.0) for i in range(len(labels))), default=0.0
            )
        return zone_delay + (self.obs.faults.dns_latency or 0.0)

    @staticmethod
    def _under(name: str, apexes: set[str]) -> bool:
        if not apexes:
            return False
        labels = name.split(".")
        return any(".".join(labels[i:]) in apexes for i in range(len(labels)))

    def _exists_below(self, name: str) -> bool:
        """Empty non-terminals (``l.google.com`` above ``gmail-smtp-in.l.google.com``) exist."""
        zone = self.world.zone
        if self._ancestors_of != len(zone):  # names were added (tests may extend a world's zone)
            self._ancestors = {
                key.split(".", k)[-1]
                for key in tuple(zone)  # tests may add names while the server thread reads
                for k in range(1, key.count(".") + 1)
            }
            self._ancestors_of = len(zone)
        return not name or name in self._ancestors

    def _apex(self, name: str) -> dns.name.Name:
        """The SOA owner of a negative answer: the world domain holding the name, else its TLD."""
        labels = name.split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            if candidate in self.world.domains and candidate in self.world.zone:
                return dns.name.from_text(candidate)
        return dns.name.from_text(labels[-1] or ".")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, answers: ZoneAnswers) -> None:
        self.answers = answers
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # made by a datagram endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply, delay = self.answers.answer(data, udp=True)
        if reply is None:
            return
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._send, reply, addr)
        else:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable from a client that gave up before a delayed answer
        log.debug("DNS UDP error: %s", exc)


class DnsServer:
    """The running server: ``port`` for resolvers; ``close()`` also drops open TCP connections."""

    def __init__(self, answers: ZoneAnswers) -> None:
        self.answers = answers
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> DnsServer:
        loop = asyncio.get_running_loop()
        tcp_sock, udp_sock = bind_on_one_port(
            [(host, socket.SOCK_STREAM), (host, socket.SOCK_DGRAM)],
            port,
            busy="no port is free for both DNS UDP and TCP; pass an explicit free port",
        )
        self.port = tcp_sock.getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self.answers), sock=udp_sock
        )
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock, backlog=1024)
        return self

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_SECONDS):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    wire = await reader.readexactly(length)
                reply, delay = self.answers.answer(wire, udp=False)
                if reply is None:
                    continue
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # close() ends open connections; a cancelled handler would be logged by asyncio
        finally:
            writer.close()
            if task is not None:
                self._tcp_tasks.discard(task)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tcp_tasks):
            task.cancel()
        if self._tcp_tasks:
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()


async def start_dns(
    world: World, obs: Observatory, *, host: str = "127.0.0.1", port: int = 0
) -> DnsServer:
    """Serve ``world.zone`` on ``host:port`` (UDP and TCP); port 0 picks a port free for both."""
    return await DnsServer(ZoneAnswers(world, obs)).start(host, port)
