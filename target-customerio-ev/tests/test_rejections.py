"""A Pipelines API that refuses everything (400, 413) or stops accepting the key (401) ends the run
with one line, few dead letters and no STATE past what it accepted; single bad records do not."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from target_customerio_ev.rejections import END_EVIDENCE, EVIDENCE, RejectionWatch
from target_customerio_ev.sender import AllRejected

Answer = Callable[[int, dict[str, Any]], tuple[int, dict[str, Any]]]


class Scripted:
    """A loopback HTTP server whose answer to the n-th POST (0-based) `answer(n, body)` decides."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.accepted = 0  # messages answered 200
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    n = server.requests
                    server.requests += 1
                    status, answer = server.answer(n, body)
                    if status == 200:
                        server.accepted += len(body.get("batch", []))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Answer], Scripted]]:
    servers: list[Scripted] = []

    def start(answer: Answer) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def everyone(sb, h):
    return [h.person_record(p) for p in sb.world.iter_people()]


def dead_letters(tmp_path):
    path = tmp_path / "dead.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


# ------------------------------------------------------------------------------ the rule
def test_the_watch_needs_evidence_and_no_acceptance():
    watch = RejectionWatch()
    for _ in range(EVIDENCE - 1):
        watch.reject("id", 400)
    assert watch.verdict() is None
    assert watch.verdict(END_EVIDENCE) is not None  # at the end of a run, a few are enough
    watch.reject("email", 400)
    verdict = watch.verdict()
    assert verdict is not None and verdict.kind is None and verdict.rejected == EVIDENCE
    assert verdict.said() == "HTTP 400: the calls failed validation"
    watch.accept(["id"])  # one accepted id: no longer "everything"
    assert watch.verdict(END_EVIDENCE) is None
    for _ in range(EVIDENCE):
        watch.reject("email", 400)
    email = watch.verdict()
    assert email is not None and email.kind == "email" and email.rejected == EVIDENCE + 1
    watch.accept(["email"])
    assert watch.verdict(END_EVIDENCE) is None


# ------------------------------------------------------------------------------ the real target
def test_a_400_to_every_batch_stops_the_run_with_one_line(sb, h, tmp_path):
    people = list(sb.world.iter_people())
    sb.obs.faults.pipelines_reject_ids = frozenset(
        {p.id for p in people if p.id} | {p.email.strip() for p in people if p.email}
    )
    run = h.run_executable(
        tmp_path,
        sb.target_config(dead_letter_path=str(tmp_path / "dead.jsonl")),
        h.singer_lines(everyone(sb, h), state_every=50),
    )
    assert run.returncode == 1 and run.states == [], run.stderr
    (error,) = errors(run.stderr)
    # The watch decides after 20 rejections; a batch already in flight may add one or two.
    rejected = re.search(r"Pipelines API rejected all (\d+) messages sent", error)
    assert rejected is not None and 20 <= int(rejected.group(1)) <= 25, error
    assert "accepted none (HTTP 400: the calls failed validation)" in error
    assert "check traits" in error and "STATE was not advanced" in error
    assert "Traceback" not in run.stderr and "@" not in error
    # Bisection finds every refused message alone: a handful of dead letters, not 600.
    assert EVIDENCE <= len(dead_letters(tmp_path)) <= EVIDENCE + 4
    assert sb.obs.requests_to("pipelines") < 200 and not sb.obs.landed


def test_a_413_to_every_batch_names_max_batch_bytes(sb, h, tmp_path, scripted):
    server = scripted(lambda n, body: (413, {"meta": {"errors": ["request too large"]}}))
    run = h.run_executable(
        tmp_path,
        sb.target_config(api_url=server.url, dead_letter_path=str(tmp_path / "dead.jsonl")),
        h.singer_lines(everyone(sb, h)[:300], state_every=50),
    )
    assert run.returncode == 1 and run.states == [], run.stderr
    (error,) = errors(run.stderr)
    # Bisection reached a single message of a few hundred bytes, still refused as too large: no
    # batch size can help, and the run stops there (issue 16) instead of after 20 dead letters.
    assert "refused a single" in error and "(HTTP 413)" in error and "max_batch_bytes" in error
    assert len(dead_letters(tmp_path)) <= 4 and server.requests < 40


def test_a_key_revoked_mid_run_stops_at_once(sb, h, tmp_path, scripted):
    unauthorized = {"meta": {"errors": ["unauthorized"]}}
    server = scripted(lambda n, body: (200, {}) if n < 30 else (401, unauthorized))
    config = sb.target_config(
        api_url=server.url,
        dead_letter_path=str(tmp_path / "dead.jsonl"),
        max_in_flight=1,
        max_batch_messages=25,
        batch_size_rows=25,
        checkpoint_interval_seconds=0.0001,
    )
    run = h.run_executable(tmp_path, config, h.singer_lines(everyone(sb, h), state_every=25))
    assert run.returncode == 1, run.stderr
    (error,) = errors(run.stderr)
    assert "refused the write key (HTTP 401)" in error
    assert server.accepted > 0
    assert f"It accepted {server.accepted} messages earlier in this run: was the key" in error
    assert server.requests == 31  # the 401 was the last request: no retry, no bisection
    assert not dead_letters(tmp_path)
    assert run.states  # checkpoints before the 401, each behind what was accepted
    assert all(s["bookmarks"]["people"]["position"] <= server.accepted for s in run.states)


def test_a_short_run_whose_every_write_is_refused_fails(sb, h):
    people = [p for p in sb.world.iter_people() if p.id][:5]
    sb.obs.faults.pipelines_reject_ids = frozenset(p.id for p in people)
    with pytest.raises(AllRejected) as refused:
        h.run_in_process(sb.target_config(), h.singer_lines([h.person_record(p) for p in people]))
    assert "rejected all 5 messages sent (all by id) and accepted none" in str(refused.value)


def test_a_few_bad_records_are_dead_letters_and_the_run_goes_on(sb, h, tmp_path):
    people = [p for p in sb.world.iter_people() if p.id]
    sb.obs.faults.pipelines_reject_ids = frozenset(p.id for p in people[:3])
    target, run = h.run_in_process(
        sb.target_config(dead_letter_path=str(tmp_path / "dead.jsonl")),
        h.singer_lines([h.person_record(p) for p in people[:200]], state_every=100),
    )
    assert target.stats["dead_lettered"] == 3 and target.stats["written"] == 197
    assert run.states[-1]["bookmarks"]["people"]["position"] == 200
