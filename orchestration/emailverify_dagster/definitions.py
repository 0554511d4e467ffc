"""Dagster definitions: N partitions of `verify-people` at once, `verify-new-people` every 10 min.

Dagster calls `meltano run` itself, one subprocess per partition, in the Meltano project (this
repository unless `EV_MELTANO_PROJECT_DIR` names another): that is where a partition gets its share
(`TAP_CUSTOMERIO_PEOPLE_PARTITION=i/N`), its state id (`--state-id-suffix`) and its Meltano system
directory. Each op only waits for its `meltano run`, so the multiprocess executor runs all N at
once. Load this file with `dagster dev -f` or `dagster job execute -f` (orchestration/README.md).
"""

# No `from __future__ import annotations`: Dagster reads each op's signature when it is decorated
# and refuses a `context` annotated with a string.

import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg

#: The folder holding meltano.yml; by default the repository this file sits in.
PROJECT_DIR_ENV = "EV_MELTANO_PROJECT_DIR"
#: How many partitions `verify_people` runs at once when run config does not say.
PARTITIONS_ENV = "EV_PARTITIONS"
#: The meltano executable; by default the one beside this Python, else `meltano` on PATH.
MELTANO_ENV = "EV_MELTANO"
DEFAULT_PARTITIONS = 3
#: The multiprocess executor's `max_concurrent`: its default (the CPU count) would run only 2 of 3
#: partitions on a 2-core machine, though each op only waits for its subprocess.
MAX_PARTITIONS = 32
#: Lines of meltano's output kept for the failure message and the op's log (it holds no secrets).
TAIL_LINES = 40
#: Lines passed on to Dagster's log as they come, so the UI shows a long run's progress, and
#: its warnings and errors (Meltano's console format: `[warning  ]`, `[error    ]`) as such.
FORWARDED = (" Progress: ", " Summary: ", "Verification summary", " landing: ")
WARNINGS = ("[warning", "[error", "[critical")

#: Files a run writes whole: N partitions given one path would overwrite each other's, so each
#: gets `<stem>-partition-<i>-of-<N><suffix>`.
PER_PARTITION_FILES = (
    "MAPPER_EMAILVERIFY_REPORT_PATH",
    "MAPPER_EMAILVERIFY_REPORT_HTML_PATH",
    "TARGET_CUSTOMERIO_EV_REPORT_PATH",
)
#: Plugin folders of Meltano's system directory (the installed virtual environments).
PLUGIN_DIRS = ("extractors", "loaders", "mappers", "transformers", "utilities", "files")
SYS_DIR = "MELTANO_SYS_DIR_ROOT"
DATABASE_URI = "MELTANO_DATABASE_URI"
CACHE_URL = "MAPPER_EMAILVERIFY_CACHE_URL"
CACHE_PATH = "MAPPER_EMAILVERIFY_CACHE_PATH"

# Same cadence as meltano.yml's schedules (tests/test_orchestration.py compares them).
VERIFY_PEOPLE_CRON = "@daily"
VERIFY_NEW_PEOPLE_CRON = "*/10 * * * *"


def project_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The Meltano project every `meltano run` starts in."""
    configured = environ.get(PROJECT_DIR_ENV)
    return Path(configured).resolve() if configured else Path(__file__).resolve().parents[2]


def meltano_executable(environ: Mapping[str, str] = os.environ) -> str:
    """The meltano of this environment: Dagster and Meltano share a virtual environment here."""
    configured = environ.get(MELTANO_ENV)
    if configured:
        return configured
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if beside.exists() else shutil.which("meltano") or "meltano"


def partitions_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """`EV_PARTITIONS`, else 3; checked here so a typo fails at load, not mid-run."""
    text = environ.get(PARTITIONS_ENV, "").strip()
    if not text:
        return DEFAULT_PARTITIONS
    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTITIONS:
        raise ValueError(
            f"{PARTITIONS_ENV} must be an integer from 1 to {MAX_PARTITIONS}: {text!r}"
        )
    return int(text)


def state_id_suffix(index: int, count: int) -> str:
    """One Meltano state id per partition: Meltano refuses a second run of a state id in use."""
    return f"partition-{index}-of-{count}"


def run_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment a `meltano run` gets: this process's (MELTANO_ENVIRONMENT, keys, ...).

    meltano.yml sets `cache_path`, and the mapper refuses `cache_path` with `cache_url`: with
    `MAPPER_EMAILVERIFY_CACHE_URL` set and `MAPPER_EMAILVERIFY_CACHE_PATH` not, the latter is
    emptied so the shared PostgreSQL cache is the one used.
    """
    env = dict(environ)
    if env.get(CACHE_URL) and CACHE_PATH not in env:
        env[CACHE_PATH] = ""
    return env


def sys_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Meltano's system directory (plugins' venvs, run files, the SQLite system database)."""
    configured = environ.get(SYS_DIR)
    return project_dir(environ) / (configured or ".meltano")


def partition_sys_dir(index: int, count: int, environ: Mapping[str, str] = os.environ) -> Path:
    """The partition's own Meltano system directory, made on first use.

    Meltano writes a tap's catalog and state to `<system dir>/run/<plugin name>/` under fixed names
    (`tap.properties.json`), so N runs of one extractor in one system directory overwrite each
    other's catalog and fail ("Invalid catalog", meltano/meltano#8763). Each partition gets its
    own, whose plugin folders are links to the installed ones: installed once, run apart.
    """
    main = sys_dir(environ)
    own = main / "partitions" / state_id_suffix(index, count)
    own.mkdir(parents=True, exist_ok=True)
    for name in PLUGIN_DIRS:
        link = own / name
        if (main / name).is_dir() and not link.is_symlink():
            link.symlink_to(os.path.relpath(main / name, own), target_is_directory=True)
    return own


def partition_env(
    index: int, count: int, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """`run_env` plus the partition's share, its system directory and its own report files.

    State and the runs Meltano refuses to start twice live in the system database, which stays
    the shared one: MELTANO_DATABASE_URI if set (also when meltano.yml sets `database_uri`, which
    this variable would override), else the main system directory's SQLite file.
    """
    env = run_env(environ)
    env["TAP_CUSTOMERIO_PEOPLE_PARTITION"] = f"{index}/{count}"
    env.setdefault(DATABASE_URI, f"sqlite:///{sys_dir(environ).resolve() / 'meltano.db'}")
    env[SYS_DIR] = str(sys_dir(environ) / "partitions" / state_id_suffix(index, count))
    for name in PER_PARTITION_FILES:
        if env.get(name):
            path = Path(env[name])
            suffix = state_id_suffix(index, count)
            env[name] = str(path.with_name(f"{path.stem}-{suffix}{path.suffix}"))
    return env


def run_meltano(context: dg.OpExecutionContext, args: list[str], env: Mapping[str, str]) -> None:
    """Runs `meltano <args>` to the end; a non-zero exit raises `dg.Failure` with the output's tail.

    Stopping the Dagster run (an exception here) stops meltano with SIGTERM, which it handles:
    the plugins stop and no STATE past what landed is saved.
    """
    where = project_dir(env)
    shown = " ".join(["meltano", *args])
    context.log.info(f"Running `{shown}` in {where}")
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(
        [meltano_executable(env), *args],
        cwd=where,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            tail.append(line)
            if any(mark in line for mark in WARNINGS):
                context.log.warning(line)
            elif any(mark in line for mark in FORWARDED):
                context.log.info(line)
        returncode = process.wait()
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
    text = "\n".join(tail)
    if returncode != 0:
        raise dg.Failure(
            description=f"`{shown}` exited with {returncode}; its last lines:\n{text}",
            metadata={"output_tail": dg.MetadataValue.text(text)},
        )
    context.log.info(f"`{shown}` finished; the last lines of its output:\n{text}")


#: Run config of `plan_partitions` (the launchpad shows it).
PARTITIONS_SCHEMA = {
    "partitions": dg.Field(
        int,
        default_value=partitions_from_env(),
        description=f"Partitions run at once, 1 to {MAX_PARTITIONS} (default: {PARTITIONS_ENV}, "
        "else 3); each reads the People whose cio_id hashes to its share and uses "
        "floor(requests_per_second / N).",
    )
}


@dg.op(out=dg.DynamicOut(str), config_schema=PARTITIONS_SCHEMA)
def plan_partitions(context: dg.OpExecutionContext) -> Iterator[dg.DynamicOutput[str]]:
    """One output per partition, "i/N" as the tap's `partition` setting reads it: the fan-out
    `run_partition` is mapped over."""
    count = int(context.op_config["partitions"])
    if not 1 <= count <= MAX_PARTITIONS:
        raise dg.Failure(description=f"partitions must be 1 to {MAX_PARTITIONS}, not {count}")
    if count > 1 and not os.environ.get(CACHE_URL):
        context.log.warning(
            f"{CACHE_URL} is not set: the partitions share meltano.yml's cache_path (one machine "
            "only) and each keeps its own per-mail-host caps, so together they may open "
            f"{count} x max_connections_per_mx connections to one mail host."
        )
    for index in range(count):
        yield dg.DynamicOutput(f"{index}/{count}", mapping_key=f"partition_{index}_of_{count}")


@dg.op
def run_partition(context: dg.OpExecutionContext, partition: str) -> None:
    """`meltano run verify-people` for one share, with the partition's own state id."""
    index, count = (int(part) for part in partition.split("/"))
    partition_sys_dir(index, count)
    run_meltano(
        context,
        ["run", f"--state-id-suffix={state_id_suffix(index, count)}", "verify-people"],
        partition_env(index, count),
    )


@dg.op
def run_verify_new_people(context: dg.OpExecutionContext) -> None:
    """`meltano run verify-new-people`: People without EV_Status, a few each time."""
    run_meltano(context, ["run", "verify-new-people"], run_env())


@dg.job(
    executor_def=dg.multiprocess_executor.configured({"max_concurrent": MAX_PARTITIONS}),
    tags={"emailverify/job": "verify-people"},
)
def verify_people() -> None:
    """Every Person, in N partitions at once (one process each)."""
    plan_partitions().map(run_partition)


@dg.job(executor_def=dg.in_process_executor, tags={"emailverify/job": "verify-new-people"})
def verify_new_people() -> None:
    """New sign-ups only; one `meltano run`, no fan-out."""
    run_verify_new_people()


verify_people_daily = dg.ScheduleDefinition(
    name="verify_people_daily", job=verify_people, cron_schedule=VERIFY_PEOPLE_CRON
)
verify_new_people_every_10_minutes = dg.ScheduleDefinition(
    name="verify_new_people_every_10_minutes",
    job=verify_new_people,
    cron_schedule=VERIFY_NEW_PEOPLE_CRON,
)

defs = dg.Definitions(
    jobs=[verify_people, verify_new_people],
    schedules=[verify_people_daily, verify_new_people_every_10_minutes],
)
