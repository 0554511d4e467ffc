"""``python -m tap_customerio_people``."""

from __future__ import annotations

from .tap import TapCustomerIOPeople

TapCustomerIOPeople.cli()
