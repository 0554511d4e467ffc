"""The README's demo: start the sandbox and show the world it serves (the full job is wired in later)."""

from __future__ import annotations

import json
import time

from .cli import describe_world
from .sandbox import Sandbox
from .world import World


def run_demo(world: World) -> int:
    started = time.monotonic()
    with Sandbox(world) as sb:
        print(describe_world(world))
        print(f"\nSandbox up in {time.monotonic() - started:.2f} s on loopback. Settings a pipeline needs:")
        print(json.dumps(sb.settings(), indent=2))
    print("\nSandbox stopped.")
    return 0
