"""Test-wide settings: offline, no telemetry, repository paths."""

import os
from pathlib import Path

import pytest

from lenssearch._runtime import apply_offline_env

apply_offline_env()
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "lenssearch" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def s1063_dir() -> Path:
    """The embedded Abell S1063 CATS gold LensTool model (see src/lenssearch/data/README.md)."""
    return DATA / "lenstool" / "AS1063_cats_gold"
