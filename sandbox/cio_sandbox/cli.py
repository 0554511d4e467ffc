"""`cio-sandbox`: serve the sandbox, describe its world, or run the demo."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .demo import run_demo
from .report import describe_world
from .sandbox import Ports, Sandbox
from .world import World


def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    parser.add_argument("--people", type=int, default=3000, help="number of People (default 3000)")
    parser.add_argument(
        "--region", choices=("us", "eu"), default="us", help="the workspace's data center"
    )
    parser.add_argument(
        "--domains", type=int, default=40, help="number of ordinary mail domains (default 40)"
    )
    parser.add_argument(
        "--smtp-latency", type=float, default=0.0, help="seconds before each SMTP reply"
    )


def _world(args: argparse.Namespace) -> World:
    return World(
        seed=args.seed,
        people=args.people,
        region=args.region,
        domains=args.domains,
        smtp_latency=args.smtp_latency,
    )


def write_configs(sb: Sandbox, directory: Path) -> dict[str, Path]:
    """One JSON settings file per plugin, ready for `--config`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for plugin, settings in sb.settings().items():
        path = directory / f"{plugin}.json"
        path.write_text(json.dumps(settings, indent=2) + "\n")
        paths[plugin] = path
    return paths


def cmd_serve(args: argparse.Namespace) -> int:
    # Before anything is printed: whoever reads "ready" may press Ctrl-C at once.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    ports = Ports.from_base(args.port_base) if args.port_base else Ports()
    sb = Sandbox(_world(args), host=args.host, ports=ports).start()
    elapsed = time.monotonic() - started
    settings: dict[str, Any] = sb.settings()
    if args.write_config:
        write_configs(sb, Path(args.write_config))
    if args.format == "json":
        print(
            json.dumps({"settings": settings, "started_in_seconds": round(elapsed, 3)}), flush=True
        )
    else:
        print(describe_world(sb.world))
        print(f"\nSandbox ready in {elapsed:.2f} s. Settings for a pipeline:\n")
        print(json.dumps(settings, indent=2))
        print("\nPress Ctrl-C to stop.", flush=True)
    while not stop.wait(0.5):
        pass
    sb.stop()
    if args.format != "json":
        print("Sandbox stopped.", flush=True)
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    print(describe_world(_world(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(_world(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cio-sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve the App, Pipelines, Track and EmailVerify.io APIs, DNS and SMTP"
    )
    _world_args(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="loopback address for the HTTP and DNS servers"
    )
    serve.add_argument(
        "--port-base",
        type=int,
        default=0,
        help="fixed ports: app, app (other region), pipelines, track, emailverify, dns, smtp "
        "from this port on (default: free ports)",
    )
    serve.add_argument("--format", choices=("text", "json"), default="text")
    serve.add_argument(
        "--write-config", metavar="DIR", help="also write one settings file per plugin here"
    )
    serve.set_defaults(func=cmd_serve)
    world = sub.add_parser("world", help="describe the world a seed generates")
    _world_args(world)
    world.set_defaults(func=cmd_world)
    demo = sub.add_parser("demo", help="run the real job against the sandbox and report")
    _world_args(demo)
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except (ValueError, OSError) as exc:
        print(f"cio-sandbox: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
