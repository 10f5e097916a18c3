"""Shared fixtures: one real local Ray for the whole session (one Ray cluster per host)."""

from __future__ import annotations

import logging

import pytest
import ray


@pytest.fixture(scope="session")
def ray_session():
    """A 2-CPU local Ray, started once and shut down at the end; an already running one is reused."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    yield
    if started:
        ray.shutdown()
