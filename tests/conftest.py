"""Shared fixtures: the real data under ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data (iseg/ benchmarks, rs/ scenes)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def iseg_root(shared_data: Path) -> Path:
    """The RITM-layout interactive segmentation datasets (GrabCut, Berkeley, ...)."""
    return shared_data / "iseg"
