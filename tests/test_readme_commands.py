"""Docs that stay true: every command in a fenced shell block of the READMEs is run, here or by a
named test, or marked in the README as needing what no test has (a real workspace's keys).

A command that is never run rots silently: a renamed flag, a path of one machine, a server the
command cannot reach. So each command line (```sh, ```bash, ```shell, ```console blocks; `\\`
continuations joined, comments and `$ ` prompts removed) must be one of:

(a) run by this file, the README's text as written (placeholders replaced are listed at each
    runner), against the sandbox where it needs servers: `RUN_HERE`, filled by `@runs(...)`;
(b) run by another test, named by its node id in `ELSEWHERE` (evidence that the test runs this
    command: strings of the test's source, or of the code it runs) or `READS_SECTION` (the test
    reads its commands from that README section); the nodes are collected, so a renamed test
    fails here;
(c) marked in the README: a trailing `# needs real credentials`, or the line
    `<!-- needs real credentials: why -->` right before the fence (production commands with
    placeholders for keys); nothing the sandbox could run is marked;
(d) an entry point whose running is CI itself (`CI_ITSELF`: `make test`, `make check`, ...), or a
    benchmark (`.venv/bin/python benchmarks/...`), which tests/test_benchmarks_smoke.py runs in
    quick mode through benchmarks/run.py's BENCHMARKS.

In scope: README.md, CONTRIBUTING.md and every folder's README.md (`DOCS`). Out of scope:
CHANGELOG.md, which records what was true when each entry was written. Commands quoted inline in
prose are not extracted (most of them are names of things, not steps to type).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cio_sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

DOCS = (
    "README.md",
    "CONTRIBUTING.md",
    "benchmarks/README.md",
    "sandbox/README.md",
    "tap-customerio-people/README.md",
    "mapper-emailverify/README.md",
    "target-customerio-ev/README.md",
    "orchestration/README.md",
)
#: Markdown files not held to this rule, and why.
NOT_IN_SCOPE = {"CHANGELOG.md": "history: each entry says what was true when it was written"}

SHELL = {"sh", "bash", "shell", "console"}
NOT_SHELL = {"text", "python", "json", "yaml"}
CREDENTIALS = "needs real credentials"
FENCE = re.compile(r"^ {0,3}```(\S*)\s*$")
BLOCK_MARKER = re.compile(rf"^<!--\s*{CREDENTIALS}:\s*\S.*-->\s*$")
WHAT_TO_DO = (
    "run it in tests/test_readme_commands.py (@runs), name the test that runs it (ELSEWHERE), "
    "or, only if it needs a real workspace, mark it `# needs real credentials` "
    "(CONTRIBUTING.md, 'Docs that stay true')"
)


# ---------------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Command:
    """One command line of a README, where it is, and what marks it."""

    doc: str
    line: int
    text: str
    comment: str
    block_marked: bool
    section: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def marked(self) -> bool:
        return self.block_marked or CREDENTIALS in self.comment


@dataclass(frozen=True)
class Fence:
    doc: str
    line: int
    language: str
    body: list[tuple[int, str]]
    marked: bool
    section: str


def split_comment(line: str) -> tuple[str, str]:
    """The code and the `# comment` of a shell line (a `#` inside quotes or a word is code)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


@cache
def fences(doc: str) -> tuple[Fence, ...]:
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    found: list[Fence] = []
    section, i = "", 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i]
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append((i + 1, lines[i]))
            i += 1
        marked = start > 0 and bool(BLOCK_MARKER.match(lines[start - 1]))
        found.append(Fence(doc, start + 1, opening.group(1), body, marked, section))
        i += 1
    return tuple(found)


def commands_of(fence: Fence) -> list[Command]:
    """The fence's command lines: continuations joined, prompts and comments removed."""
    found: list[Command] = []
    pending: tuple[int, str] | None = None
    for number, raw in fence.body:
        line = raw.strip()
        if pending is None:
            if fence.language == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            elif line.startswith("$ "):
                line = line[2:]
            pending = (number, "")
        start, text = pending
        if line.endswith("\\"):
            pending = (start, f"{text}{line[:-1].strip()} ")
            continue
        pending = None
        code, comment = split_comment(text + line)
        if code:
            found.append(Command(fence.doc, start, code, comment, fence.marked, fence.section))
    return found


@cache
def documented() -> tuple[Command, ...]:
    return tuple(
        command
        for doc in DOCS
        for fence in fences(doc)
        if fence.language in SHELL
        for command in commands_of(fence)
    )


def documented_as(doc: str, prefix: str) -> list[Command]:
    """The commands of `doc` starting with `prefix`: at least one, or the README changed."""
    found = [c for c in documented() if c.doc == doc and c.text.startswith(prefix)]
    assert found, f"{doc} no longer has a command starting with {prefix!r}"
    return found


# ---------------------------------------------------------------------------------- the rules

F = TypeVar("F", bound=Callable[..., Any])

#: (doc, command prefix) -> the test of this file that runs those commands.
RUN_HERE: dict[tuple[str, str], str] = {}


def runs(*where: tuple[str, str]) -> Callable[[F], F]:
    """Registers the decorated test as the one that runs the commands `where` names."""

    def mark(test: F) -> F:
        for key in where:
            RUN_HERE[key] = test.__name__
        return test

    return mark


@dataclass(frozen=True)
class Elsewhere:
    """A command run by another test; `evidence` is (file, text) pairs showing that it does."""

    command: str
    node: str
    evidence: tuple[tuple[str, str], ...]


E2E_DEMO = "tests/test_e2e_meltano.py::test_the_readme_demo_runs"
MELTANO_ADD = (
    "tests/test_meltano_add.py::test_a_fresh_project_adds_configures_and_runs_the_three_plugins"
)
SMOKE = "tests/test_benchmarks_smoke.py::test_benchmark_runs_and_feeds_the_table"
PLUGINS = ("mapper-emailverify", "tap-customerio-people", "target-customerio-ev")
RUNS_CIO_SANDBOX_DEMO = ("tests/test_e2e_meltano.py", '/ "cio-sandbox"), "demo"')
ORCHESTRATION = "tests/test_orchestration.py"
DAGSTER_DEFINITIONS = "-f orchestration/emailverify_dagster/definitions.py"
ORCHESTRATION_RUNS = (
    f"{ORCHESTRATION}::"
    "test_three_partitions_at_once_verify_everyone_once_within_shared_caps_then_from_the_cache"
)

ELSEWHERE = (
    Elsewhere(
        "make demo",
        E2E_DEMO,
        (("Makefile", "demo: $(STAMP)\n\t$(BIN)/cio-sandbox demo\n"), RUNS_CIO_SANDBOX_DEMO),
    ),
    Elsewhere("cio-sandbox demo", E2E_DEMO, (RUNS_CIO_SANDBOX_DEMO,)),
    # The production block's install: what bench_job does in this project before its `meltano run`.
    Elsewhere(
        ".venv/bin/meltano install",
        f"{SMOKE}[job]",
        (("benchmarks/bench_job.py", '[str(MELTANO), "install"],\n            cwd=root,'),),
    ),
    # orchestration/README.md: test_orchestration.py holds each line and runs it (run_readme).
    Elsewhere(
        f".venv/bin/dagster definitions validate {DAGSTER_DEFINITIONS}",
        f"{ORCHESTRATION}::test_the_definitions_load_with_both_jobs_and_their_schedules",
        (
            (ORCHESTRATION, f'".venv/bin/dagster definitions validate {DAGSTER_DEFINITIONS}"'),
            (ORCHESTRATION, "run_readme(VALIDATE, "),
        ),
    ),
    Elsewhere(
        f".venv/bin/dagster job execute {DAGSTER_DEFINITIONS} -j verify_people",
        ORCHESTRATION_RUNS,
        (
            (
                ORCHESTRATION,
                f'".venv/bin/dagster job execute {DAGSTER_DEFINITIONS} -j verify_people"',
            ),
            (ORCHESTRATION, "run_readme(VERIFY_PEOPLE, "),
        ),
    ),
    Elsewhere(
        f".venv/bin/dagster job execute {DAGSTER_DEFINITIONS} -j verify_new_people",
        ORCHESTRATION_RUNS,
        (
            (
                ORCHESTRATION,
                f'".venv/bin/dagster job execute {DAGSTER_DEFINITIONS} -j verify_new_people"',
            ),
            (ORCHESTRATION, "run_readme(VERIFY_NEW_PEOPLE, "),
        ),
    ),
    # The target README's job line is the line test_meltano_add reads from README.md.
    Elsewhere(
        "meltano run tap-customerio-people emailverify target-customerio-ev",
        MELTANO_ADD,
        (
            (
                "README.md",
                "```sh\nmeltano run tap-customerio-people emailverify target-customerio-ev\n```",
            ),
        ),
    ),
)


@dataclass(frozen=True)
class ReadsSection:
    """Every command of a README section, which `node` reads from the README and runs."""

    doc: str
    section: str
    node: str


READS_SECTION = (ReadsSection("README.md", "## Add to an existing Meltano project", MELTANO_ADD),)

#: Entry points whose running is CI itself (.ci/run: `make check`, then `make test`), and why.
CI_ITSELF = {
    "make test": ".ci/run runs it on a fresh clone",
    "make check": ".ci/run runs it before make test",
    "make test-fast": "make test's pytest run without the tests marked slow",
    ".venv/bin/python -m pytest tap-customerio-people/tests -q": "one of make test's testpaths",
    ".venv/bin/python -m pytest target-customerio-ev/tests -q": "one of make test's testpaths",
    ".venv/bin/mypy tap-customerio-people/tap_customerio_people": "one of make check's mypy files",
}

BENCHMARK = re.compile(r"^(?:[A-Z_]+=\S+ )*\.venv/bin/python benchmarks/(\w+)\.py(?: (.*))?$")


def covered_by(command: Command) -> str | None:
    """Which rule covers the command, or None."""
    for (doc, prefix), test in RUN_HERE.items():
        if command.doc == doc and command.text.startswith(prefix):
            return f"run by {test}"
    for rule in ELSEWHERE:
        if command.text == rule.command:
            return f"run by {rule.node}"
    for reader in READS_SECTION:
        if command.doc == reader.doc and command.section == reader.section:
            return f"read and run by {reader.node}"
    if command.text in CI_ITSELF:
        return f"CI itself: {CI_ITSELF[command.text]}"
    if BENCHMARK.match(command.text) or command.text == "make bench":
        return f"a benchmark: {SMOKE}"
    if command.marked:
        return CREDENTIALS
    return None


# ------------------------------------------------------------------------------ the rule's checks


def test_the_docs_in_scope_are_every_readme() -> None:
    found = {
        str(path.relative_to(ROOT))
        for pattern in ("*.md", "*/*.md")
        for path in ROOT.glob(pattern)
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    }
    assert found - set(NOT_IN_SCOPE) == set(DOCS), "add the new document to DOCS (or NOT_IN_SCOPE)"


def test_every_fence_says_what_it_holds() -> None:
    """An unlabelled fence could hide a command from this test."""
    wrong = [
        f"{fence.doc}:{fence.line}: fence labelled {fence.language!r}: label it sh (commands) "
        "or text, python, json, yaml"
        for doc in DOCS
        for fence in fences(doc)
        if fence.language not in SHELL | NOT_SHELL
    ]
    assert not wrong, "\n".join(wrong)


def test_the_extraction_reads_shell_as_the_shell_does() -> None:
    fence = Fence(
        "x.md",
        1,
        "console",
        [
            (2, "$ make demo   # the demo"),
            (3, "output line"),
            (4, "$ cio-sandbox serve \\"),
            (5, "      --seed 7   # comment"),
            (6, "$ meltano select tap people '*'  # '#' quoted: 'a # b'"),
        ],
        False,
        "",
    )
    assert [(c.line, c.text, c.comment) for c in commands_of(fence)] == [
        (2, "make demo", "the demo"),
        (4, "cio-sandbox serve --seed 7", "comment"),
        (6, "meltano select tap people '*'", "'#' quoted: 'a # b'"),
    ]


def test_every_command_is_run_or_marked() -> None:
    assert documented(), "no command found: is the extraction broken?"
    missing = [
        f"{c.where}: `{c.text}` is run by no test: {WHAT_TO_DO}"
        for c in documented()
        if covered_by(c) is None
    ]
    assert not missing, "\n".join(missing)


def test_every_rule_names_a_documented_command() -> None:
    """A rule left behind by a removed command would cover the next one by accident."""
    texts = {c.text for c in documented()}
    stale = [f"RUN_HERE {key}" for key in RUN_HERE if not documented_as_any(*key)]
    stale += [f"ELSEWHERE {r.command!r}" for r in ELSEWHERE if r.command not in texts]
    stale += [f"CI_ITSELF {text!r}" for text in CI_ITSELF if text not in texts]
    stale += [
        f"READS_SECTION {r.section!r}"
        for r in READS_SECTION
        if not any(c.doc == r.doc and c.section == r.section for c in documented())
    ]
    assert not stale, stale


def documented_as_any(doc: str, prefix: str) -> bool:
    return any(c.doc == doc and c.text.startswith(prefix) for c in documented())


def test_no_marked_command_could_run_here() -> None:
    """What the sandbox or a mapped test runs is never excused by a marker."""
    for c in documented():
        if CREDENTIALS in c.comment:
            rule = covered_by(Command(c.doc, c.line, c.text, "", False, c.section))
            assert rule is None, f"{c.where}: `{c.text}` is marked but {rule}: drop the marker"


@cache
def collected_nodes() -> frozenset[str]:
    files = sorted(
        {r.node.split("::")[0] for r in ELSEWHERE}
        | {r.node.split("::")[0] for r in READS_SECTION}
        | {SMOKE.split("::")[0]}
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return frozenset(line.strip() for line in done.stdout.splitlines() if "::" in line)


def test_the_tests_named_exist_and_run_the_command() -> None:
    nodes = collected_nodes()
    for rule in ELSEWHERE:
        assert rule.node in nodes, f"{rule.command!r}: no test {rule.node}"
        for path, text in rule.evidence:
            assert text in (ROOT / path).read_text(), f"{rule.command!r}: {path} lacks {text!r}"
    for reader in READS_SECTION:
        assert reader.node in nodes, reader.node
        source = (ROOT / reader.node.split("::")[0]).read_text()
        assert reader.section in source, f"{reader.node} no longer reads {reader.section!r}"


def test_ci_runs_the_entry_points() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    test_recipe = re.search(r"^test: .*\n\t(.*)$", makefile, re.M)
    assert test_recipe, "Makefile has no test target"
    for text in CI_ITSELF:
        if text in ("make test", "make check"):
            assert re.search(rf"^{text}$", ci, re.M), f".ci/run no longer runs {text}"
        elif text == "make test-fast":
            fast = re.search(r"^test-fast: .*\n\t(.*)$", makefile, re.M)
            assert fast and fast.group(1) == f'{test_recipe.group(1)} -m "not slow"'
        elif pytest_path := re.fullmatch(r"\.venv/bin/python -m pytest (\S+) -q", text):
            assert f'"{pytest_path.group(1)}",' in pyproject, f"{text}: not a testpath"
        elif mypy_path := re.fullmatch(r"\.venv/bin/mypy (\S+)", text):
            assert f'"{mypy_path.group(1)}",' in pyproject, f"{text}: not in mypy's files"
        else:
            pytest.fail(f"CI_ITSELF {text!r}: say here how CI runs it")


@cache
def benchmark_suite() -> dict[str, str]:
    """benchmarks/run.py's BENCHMARKS: script name -> key."""
    source = (ROOT / "benchmarks" / "run.py").read_text()
    block = source.split("BENCHMARKS:", 1)[1].split("}", 1)[0]
    return {script: key for key, script in re.findall(r'"(\w+)": (bench_\w+)\.run', block)}


def test_the_benchmark_commands_are_benchmarks_the_smoke_test_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "bench: $(STAMP)\n\t$(BIN)/python benchmarks/run.py\n" in makefile
    nodes = collected_nodes()
    suite = benchmark_suite()
    bench = [c for c in documented() if BENCHMARK.match(c.text)]
    assert bench
    for c in bench:
        match = BENCHMARK.match(c.text)
        assert match
        script, args = match.group(1), match.group(2) or ""
        source = (ROOT / "benchmarks" / f"{script}.py").read_text()
        if script == "run":
            keys = list(suite.values())
            for only in re.findall(r"--only (\w+)", args):
                assert only in keys, f"{c.where}: --only {only} is no benchmark"
        else:
            assert script in suite, f"{c.where}: {script} is not in benchmarks/run.py's BENCHMARKS"
            keys = [suite[script]]
        for flag in re.findall(r"--[\w-]+", args):
            assert f'"{flag}"' in source, f"{c.where}: {script}.py has no {flag}"
        for key in keys:
            assert f"{SMOKE}[{key}]" in nodes, f"{c.where}: the smoke test does not run {key}"


# ---------------------------------------------------------------------------------- (a) runs


def shell(
    command: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`command` through bash, as a reader pastes it, with this venv first on PATH."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout + done.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder standing for the repository root, so `.venv/bin/...` resolves as documented."""
    (tmp_path / ".venv").symlink_to(BIN.parent)
    return tmp_path


def valid_address(sb: Sandbox) -> str:
    """An address the world's ground truth says is a plain, existing mailbox."""
    return next(
        str(p.email)
        for p in sb.world.iter_people()
        if p.truth.case == "normal"
        and (p.truth.status, p.truth.substatus) == ("Valid", "mailbox_exists")
        and p.email
        and p.email == p.email.strip().lower()
    )


def singer_file(path: Path, sb: Sandbox, verdicts: bool) -> None:
    """A few tap-shaped People of the sandbox's world, with their true verdicts or without."""
    properties: dict[str, Any] = {
        "cio_id": {"type": "string"},
        "id": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "attributes": {"type": "object"},
    }
    if verdicts:
        for name in ("EV_Status", "EV_SubStatus"):
            properties[name] = {"type": ["string", "null"]}
        properties["EV_Validation_Timestamp"] = {"type": ["string", "null"], "format": "date-time"}
    schema = {"type": "object", "properties": properties}
    lines = [{"type": "SCHEMA", "stream": "people", "schema": schema, "key_properties": ["cio_id"]}]
    people = [p for p in sb.world.iter_people() if p.id and p.email][:5]
    for p in people:
        record: dict[str, Any] = {"cio_id": p.cio_id, "id": p.id, "email": p.email}
        record["attributes"] = {}
        if verdicts:
            record["EV_Status"], record["EV_SubStatus"] = p.truth.status, p.truth.substatus
            record["EV_Validation_Timestamp"] = "2026-12-01T08:00:00+00:00"
        lines.append({"type": "RECORD", "stream": "people", "record": record})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@runs(
    ("README.md", ".venv/bin/emailverify-report "),
    ("mapper-emailverify/README.md", "emailverify-report "),
)
def test_emailverify_report_draws_the_page(workdir: Path) -> None:
    """Placeholders: mapper.json and target.json are small reports written here."""
    mapper = {
        "records": 3,
        "verified": 3,
        "by_status": {"Valid": 2, "Invalid": 1},
        "by_substatus": {"Valid": {"mailbox_exists": 2}, "Invalid": {"mailbox_not_found": 1}},
        "completed": True,
    }
    target = {"completed": True, "counts": {"written": 3}, "landing": {"summary": "3 of 3"}}
    (workdir / "mapper.json").write_text(json.dumps(mapper))
    (workdir / "target.json").write_text(json.dumps(target))
    commands = documented_as("README.md", ".venv/bin/emailverify-report ")
    commands += documented_as("mapper-emailverify/README.md", "emailverify-report ")
    for command in commands:
        (workdir / "report.html").unlink(missing_ok=True)
        assert "Wrote report.html" in ok(shell(command.text, workdir)), command.where
        page = (workdir / "report.html").read_text()
        assert "Written to Customer.io" in page and "mailbox_not_found" in page


@runs(("mapper-emailverify/README.md", "emailverify-check "))
def test_emailverify_check_against_the_sandbox(
    sandbox_faults_reset: Sandbox, tmp_path: Path
) -> None:
    """Placeholders: 127.0.0.1:5353 is the sandbox's resolver, 2525 its SMTP port, and
    someone@example.com an address its world says exists."""
    sb = sandbox_faults_reset
    address = valid_address(sb)
    [command] = documented_as("mapper-emailverify/README.md", "emailverify-check ")
    text = command.text.replace("127.0.0.1:5353", sb.dns_nameserver)
    text = text.replace("--smtp-port 2525", f"--smtp-port {sb.smtp_port}")
    text = text.replace("someone@example.com", address)
    assert text.count(sb.dns_nameserver) == text.count(address) == 1, command.text
    out = ok(shell(text, tmp_path))
    assert f"{address}: Valid/mailbox_exists" in out
    assert "RCPT -> 250" in out  # the trail shows the mailbox probe


SYNOPSIS_GROUP = re.compile(r"\[([^\]]+)\]")


def instantiate(synopsis: str, values: dict[str, str]) -> str:
    """A synopsis as a command: every optional group taken, the first of `a|b`, and the
    placeholders of `values` replaced."""
    text = SYNOPSIS_GROUP.sub(lambda m: m.group(1).split("|")[0], synopsis)
    text = re.sub(r"(\w+)\|\w+", r"\1", text)
    for placeholder, value in values.items():
        text = re.sub(rf"(?<=\s){re.escape(placeholder)}(?=\s|$)", value, text)
    return " ".join(text.split())


def free_port_block(size: int) -> int:
    """A base port whose next `size` ports are free on 127.0.0.1 now."""
    for base in range(21000, 29000, 97):
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free block of ports")


@runs(("sandbox/README.md", "cio-sandbox serve "), ("sandbox/README.md", "cio-sandbox world "))
def test_the_sandbox_synopses_run(tmp_path: Path) -> None:
    """Each synopsis's options and choices are the CLI's, and it runs with every option given.
    Placeholders: DIR is a temporary folder, the port base 18000 a free block of ports (a fixed
    one could be taken on a shared machine)."""
    for prefix in ("cio-sandbox serve ", "cio-sandbox world "):
        [command] = documented_as("sandbox/README.md", prefix)
        program, sub = command.text.split()[:2]
        usage = ok(shell(f"{program} {sub} --help", tmp_path))
        for flag in re.findall(r"--[\w-]+", command.text):
            assert flag in usage, f"{command.where}: {flag} is not an option of {program} {sub}"
        for choice in re.findall(r"\w+(?:\|\w+)+", command.text):
            assert "{" + choice.replace("|", ",") + "}" in usage, f"{command.where}: {choice}"

    [world] = documented_as("sandbox/README.md", "cio-sandbox world ")
    assert "Ground truth by EV_Status" in ok(shell(instantiate(world.text, {}), tmp_path))

    [serve] = documented_as("sandbox/README.md", "cio-sandbox serve ")
    configs = tmp_path / "sandbox-config"
    text = instantiate(serve.text, {"DIR": str(configs), "18000": str(free_port_block(7))})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with subprocess.Popen(
        ["bash", "-c", f"exec {text}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as server:
        assert server.stdout
        lines = iter_until(server.stdout, "Press Ctrl-C to stop.", seconds=60)
        server.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest = server.communicate(timeout=30)[0]
    assert server.returncode == 0, lines + rest
    assert "Sandbox stopped." in rest
    written = sorted(path.name for path in configs.iterdir())
    assert written == [f"{p}.json" for p in PLUGINS], written


def iter_until(stream: Any, marker: str, seconds: float) -> str:
    """What `stream` printed up to the line holding `marker`."""
    deadline, seen = time.monotonic() + seconds, ""
    while marker not in seen:
        line = stream.readline()
        assert line and time.monotonic() < deadline, f"no {marker!r} in: {seen[-2000:]}"
        seen += line
    return seen


@runs(("tap-customerio-people/README.md", ".venv/bin/ruff "))
def test_the_tap_lint_line_runs() -> None:
    [command] = documented_as("tap-customerio-people/README.md", ".venv/bin/ruff ")
    out = ok(shell(command.text, ROOT))
    assert "All checks passed" in out and "already formatted" in out


@runs(("benchmarks/README.md", ".venv/bin/python -m pyinstrument "))
def test_the_target_profile_command_runs(sandbox_faults_reset: Sandbox, workdir: Path) -> None:
    """Placeholders: target.json holds the sandbox's target settings, people.singer a few
    People with verdicts (the benchmark's are 50,000)."""
    sb = sandbox_faults_reset
    (workdir / "target.json").write_text(json.dumps(sb.target_config()))
    singer_file(workdir / "people.singer", sb, verdicts=True)
    [command] = documented_as("benchmarks/README.md", ".venv/bin/python -m pyinstrument ")
    ok(shell(command.text, workdir))
    assert "target_customerio_ev" in (workdir / "target.txt").read_text()


@runs(("benchmarks/README.md", ".venv/bin/py-spy record "))
def test_the_mapper_profile_command_runs(sandbox_faults_reset: Sandbox, workdir: Path) -> None:
    """Placeholders: mapper.json holds the sandbox's mapper settings, people.singer a few
    People (the benchmark's are 100,000)."""
    sb = sandbox_faults_reset
    (workdir / "mapper.json").write_text(json.dumps(sb.mapper_config()))
    singer_file(workdir / "people.singer", sb, verdicts=False)
    [command] = documented_as("benchmarks/README.md", ".venv/bin/py-spy record ")
    done = shell(command.text, workdir)
    if done.returncode and "ermission" in done.stderr:
        pytest.skip(f"py-spy may not trace processes here: {done.stderr.strip()[-300:]}")
    ok(done)
    assert "mapper_emailverify" in (workdir / "mapper.txt").read_text()


@runs(("benchmarks/README.md", "mkdir -p /tmp/before "))
def test_the_before_tree_command_runs(tmp_path: Path) -> None:
    """Placeholder: /tmp/before is a temporary folder. Reads the repository, changes nothing."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    [command] = documented_as("benchmarks/README.md", "mkdir -p /tmp/before ")
    commit = command.text.split("git archive ", 1)[1].split()[0]
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True
    )
    if known.returncode:
        pytest.skip(f"commit {commit} is not in this clone's history (a shallow clone)")
    before = tmp_path / "before"
    ok(shell(command.text.replace("/tmp/before", str(before)), ROOT))
    assert (before / "target-customerio-ev" / "target_customerio_ev" / "target.py").is_file()


def test_each_runner_is_a_test_of_this_file() -> None:
    names = {name for name in globals() if name.startswith("test_")}
    assert set(RUN_HERE.values()) <= names
