"""Dagster definitions for the repository's Meltano jobs (see orchestration/README.md)."""
