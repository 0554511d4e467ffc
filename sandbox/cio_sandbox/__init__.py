"""A local stand-in for Customer.io, EmailVerify.io and a mail world, on loopback only.

The App, Pipelines, Track and EmailVerify.io APIs plus DNS and SMTP servers, over a seeded world.
"""

from __future__ import annotations

from .observe import Faults, Observatory
from .sandbox import Ports, Sandbox
from .world import Person, Truth, World

__all__ = ["Faults", "Observatory", "Person", "Ports", "Sandbox", "Truth", "World"]
