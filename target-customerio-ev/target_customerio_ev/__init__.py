"""Singer target that writes email-verification traits onto Customer.io People."""

from __future__ import annotations

__version__ = "0.1.0"
