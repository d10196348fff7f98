"""The simulated runs shared by the quality tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.quality_runs import CABLED, FAULTS, simulate


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """reference (seed 1), clean (seed 2) and faulty (seed 3) runs of one detector."""
    directory = tmp_path_factory.mktemp("quality-runs")
    return {"reference": simulate(directory / "reference.h5", 1, CABLED),
            "clean": simulate(directory / "clean.h5", 2, CABLED),
            "faulty": simulate(directory / "faulty.h5", 3, FAULTS)}
