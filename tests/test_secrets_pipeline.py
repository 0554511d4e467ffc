"""Secrets and personal data: no key in any output stream even at DEBUG, no address in INFO logs,
no address in the mapper's cache, and TLS verification on for every HTTP client.

The pipeline runs stage by stage through files (tap > mapper > target) so that every stdout is kept
and searched as well as every stderr.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import os
import re
import sqlite3
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import trustme
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, TAP, TARGET, executable, write_config
from cio_sandbox.report import evaluate

pytestmark = pytest.mark.slow

KEYS = {
    "app_api_key": "AppKey-SECRET-7f3c9d1e42b8",
    "pipelines_api_key": "CdpKey-SECRET-a91b07d3c5e6",
    "track_site_id": "SiteId-SECRET-55aa",
    "track_api_key": "TrackKey-SECRET-66bb",
    "emailverify_api_key": "EvKey-SECRET-0d9e8f7a6b5c",
}
# A log record of the SDK's console format starts with a timestamp; other lines continue it.
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \| (\w+)\s*\|")


def leaked_forms(key: str) -> set[str]:
    """The key, and how it travels in an Authorization header (Basic user with empty password)."""
    return {key, base64.b64encode(f"{key}:".encode()).decode()}


def stage(
    name: str,
    config: Path,
    stdin: Path | None,
    out: Path,
    env: dict[str, str],
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    with out.open("wb") as stdout, stdin.open("rb") if stdin else open(os.devnull, "rb") as inp:
        done = subprocess.run(
            [executable(name), "--config", str(config), *(extra or [])],
            stdin=inp,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
            timeout=180,
        )
    out.with_suffix(".log").write_bytes(done.stderr)
    return done


def info_and_above(log: str) -> str:
    """The INFO, WARNING and ERROR records of a DEBUG log, continuation lines included."""
    kept, keep = [], False
    for line in log.splitlines():
        match = RECORD_START.match(line)
        if match:
            keep = match.group(1) != "DEBUG"
        if keep:
            kept.append(line)
    return "\n".join(kept)


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    """The whole job at DEBUG with distinctive keys, the remote backend so its key is used too."""
    workdir = tmp_path_factory.mktemp("secrets")
    world = World(seed=51, people=200)
    world.keys = dataclasses.replace(world.keys, **KEYS)
    env = {**os.environ, "LOGLEVEL": "DEBUG"}
    with Sandbox(world) as sb:
        assert sb.keys.app_api_key == KEYS["app_api_key"]
        sb.obs.faults.app_rate_limit = 0
        tap_cfg = write_config(workdir, TAP, sb.tap_config(requests_per_second=200))
        map_cfg = write_config(
            workdir,
            MAPPER,
            sb.mapper_config(backend="emailverify", cache_path=str(workdir / "cache.sqlite")),
        )
        tgt_cfg = write_config(workdir, TARGET, sb.target_config())
        runs = [
            stage(TAP, tap_cfg, None, workdir / "tap.out", env),
            stage(MAPPER, map_cfg, workdir / "tap.out", workdir / "mapper.out", env),
            stage(TARGET, tgt_cfg, workdir / "mapper.out", workdir / "target.out", env),
        ]
        assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr[-1500:] for r in runs]
        yield sb, workdir


def test_the_debug_run_did_the_job(debug_run) -> None:
    sb, workdir = debug_run
    assert sb.obs.requests_to("emailverify") > 0, (
        "the remote backend (and its key) must be exercised"
    )
    log = (workdir / "mapper.log").read_text()
    assert " | DEBUG " in log, "LOGLEVEL=DEBUG must reach the plugins"
    report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
    assert report.coverage == 1.0 and report.false_invalid == 0


def test_no_key_in_any_output_stream_at_debug(debug_run) -> None:
    _, workdir = debug_run
    streams = {
        p.name: p.read_bytes().decode("utf-8", "replace")
        for p in sorted(workdir.iterdir())
        if p.suffix in (".out", ".log")
    }
    assert len(streams) == 6
    for name, text in streams.items():
        for setting, key in KEYS.items():
            for form in leaked_forms(key):
                assert form not in text, f"{setting} appears in {name}"


def test_no_address_in_info_logs(debug_run) -> None:
    sb, workdir = debug_run
    addresses = {
        p.email.strip().lower() for p in sb.world.iter_people() if p.email and "@" in p.email
    }
    for log_file in sorted(workdir.glob("*.log")):
        info = info_and_above(log_file.read_text()).lower()
        leaked = sorted(a for a in addresses if a in info)
        assert not leaked, f"{log_file.name} has addresses at INFO or above: {leaked[:3]}"


def test_the_cache_stores_no_plain_address(debug_run, tmp_path: Path) -> None:
    """Run the builtin backend over the same tap output, then read every byte of its SQLite
    files."""
    sb, workdir = debug_run
    cache = tmp_path / "cache.sqlite"
    cfg = write_config(tmp_path, MAPPER, sb.mapper_config(cache_path=str(cache)))
    done = stage(MAPPER, cfg, workdir / "tap.out", tmp_path / "mapper.out", dict(os.environ))
    assert done.returncode == 0, done.stderr[-1500:]
    with sqlite3.connect(cache) as db:
        results = db.execute("SELECT key FROM results").fetchall()
        bounces = db.execute("SELECT key FROM bounces").fetchall()
    assert len(results) > 100 and bounces, "the cache should hold verdicts and bounce history"
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for (key,) in results + bounces)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("cache.sqlite*")).lower()
    people = [p for p in sb.world.iter_people() if p.email and "@" in p.email]
    for person in people:
        address = person.email.strip().lower()
        local = address.partition("@")[0]
        assert address.encode("utf-8", "replace") not in raw
        if len(local) >= 6:
            assert local.encode("utf-8", "replace") not in raw, "a local part is stored"


# ------------------------------------------------------------------------------------- TLS
class _Counting(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def untrusted_https() -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server on loopback whose certificate no client trusts (a man in the middle)."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    seen: list[str] = []
    _Counting.seen = seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


SCHEMA_LINE = json.dumps(
    {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["cio_id"],
        "schema": {
            "type": "object",
            "properties": {
                "cio_id": {"type": "string"},
                "email": {"type": ["string", "null"]},
                "EV_Status": {"type": ["string", "null"]},
                "EV_SubStatus": {"type": ["string", "null"]},
            },
        },
    }
)


def test_every_http_client_verifies_tls(untrusted_https, tmp_path: Path) -> None:
    """Pointed at a server with an untrusted certificate, each plugin refuses to talk to it."""
    url, seen = untrusted_https
    record = json.dumps(
        {
            "type": "RECORD",
            "stream": "people",
            "record": {
                "cio_id": "1",
                "email": "tls.probe@example.com",
                "EV_Status": "Valid",
                "EV_SubStatus": "mailbox_exists",
            },
        }
    )
    (tmp_path / "in.jsonl").write_text(f"{SCHEMA_LINE}\n{record}\n")
    env = dict(os.environ)
    # Default retry settings: a certificate failure must not be retried, and must say so in
    # one line.
    tap = stage(
        TAP,
        write_config(tmp_path, TAP, {"app_api_key": KEYS["app_api_key"], "api_url": url}),
        None,
        tmp_path / "tap.out",
        env,
    )
    target = stage(
        TARGET,
        write_config(
            tmp_path, TARGET, {"pipelines_api_key": KEYS["pipelines_api_key"], "api_url": url}
        ),
        tmp_path / "in.jsonl",
        tmp_path / "target.out",
        env,
    )
    for done in (tap, target):
        log = done.stderr.decode()
        assert done.returncode != 0 and "Traceback" not in log, log[-1500:]
        [error] = [line for line in log.splitlines() if "| ERROR" in line and "certificate" in line]
        assert f"TLS certificate of {url} could not be verified" in error
        assert "etry" not in log.replace("max_retries", ""), "a certificate failure was retried"
    mapper = stage(
        MAPPER,
        write_config(
            tmp_path,
            MAPPER,
            {
                "backend": "emailverify",
                "emailverify_api_key": KEYS["emailverify_api_key"],
                "emailverify_api_url": url,
                "smtp_check": False,
            },
        ),
        tmp_path / "in.jsonl",
        tmp_path / "mapper.out",
        env,
    )
    # The mapper too: a certificate failure is a configuration error, not an Unknown per address.
    log = mapper.stderr.decode()
    assert mapper.returncode == 1 and "Traceback" not in log, log[-1500:]
    [error] = [line for line in log.splitlines() if "| ERROR" in line and "certificate" in line]
    assert f"TLS certificate of {url} could not be verified" in error
    out = [json.loads(line) for line in (tmp_path / "mapper.out").read_text().splitlines()]
    assert [m for m in out if m["type"] == "RECORD"] == [], "a record was written without a verdict"
    assert seen == [], "a request went through a TLS connection that should have been refused"
