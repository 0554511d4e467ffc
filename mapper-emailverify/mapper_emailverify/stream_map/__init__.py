"""The Singer side of the mapper: a thin `InlineMapper` (`mapper.py`) over the verification
engine."""
