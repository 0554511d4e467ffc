"""Customer.io sandbox: App, Pipelines, Track and EmailVerify.io APIs plus a DNS and SMTP mail world on loopback."""

from __future__ import annotations

from .observe import Faults, Observatory
from .sandbox import Ports, Sandbox
from .world import Person, Truth, World

__all__ = ["Faults", "Observatory", "Person", "Ports", "Sandbox", "Truth", "World"]
