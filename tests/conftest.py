"""Shared test fixtures: the location of the project's shared fixtures (``../shared`` beside the checkout).

The package itself never reads ``../shared``; only tests do, and they skip cleanly when it is absent.
``ROOST_SHARED=/some/folder`` points the tests elsewhere (``ROOST_SHARED=/nonexistent`` checks the skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("ROOST_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
"""``$ROOST_SHARED``, else ``<checkout>/../shared`` (``/work/shared`` for ``/work/main``)."""


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared fixtures folder; tests that use it are skipped when it is missing."""
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED}")
    return SHARED


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one torch thread, especially on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
