"""A faulty run of a known detector graded against a clean reference run of it.

The tables are the simulator's truth per channel and a plain numpy recount of
each file's ADC values; the masks come from the ``daq_configs`` the faulty
file carries. What the checks must find is what the simulator injected.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.quality_runs import FAULT_TILES, injected, simulate, table_of

from exporter.quality import (
    BAD,
    CHECKS,
    GOOD,
    NOT_ENOUGH_DATA,
    WARNING,
    RunChannels,
    build_checks,
    build_reference,
    channel_status,
    evaluate,
    masks_from_file,
)
from exporter.quality.table import channel_key
from exporter.simulate import Faults


@pytest.fixture(scope="module")
def reference(runs):
    path = runs["reference"]
    return build_reference(table_of(path), [str(path)], None, name="ref-1")


def _evaluate(path, reference, masks=None):
    return evaluate(build_checks(CHECKS), RunChannels.from_columns(table_of(path)),
                    rate_window=10.0, hot_rate=20.0, reference=reference, masks=masks)


@pytest.fixture(scope="module")
def faulty(runs, reference):
    return _evaluate(runs["faulty"], reference, masks_from_file(runs["faulty"]))


@pytest.fixture(scope="module")
def clean(runs, reference):
    return _evaluate(runs["clean"], reference, masks_from_file(runs["clean"]))


def channel_statuses(path, reference, masks) -> dict[int, str]:
    return channel_status(build_checks(CHECKS), RunChannels.from_columns(table_of(path)),
                          rate_window=10.0, hot_rate=20.0, reference=reference, masks=masks)


def test_every_fault_is_graded_at_its_tile_and_nowhere_else(faulty) -> None:
    grades = {(g.check, g.io_group, g.tile): g for g in faulty.grades}
    for check, tiles in FAULT_TILES.items():
        for tile in [(1, 1), (1, 2), (2, 1), (2, 2)]:
            grade = grades[(check, *tile)]
            if tile in tiles:
                assert grade.grade in (WARNING, BAD), grade
                assert "vs reference run ref-1" in grade.reason
            else:
                assert grade.grade == GOOD, grade


def test_the_reason_counts_the_channels(runs, faulty) -> None:
    truth = injected(runs["faulty"])
    grade = next(g for g in faulty.grades
                 if (g.check, g.io_group, g.tile) == ("dead_channels", 2, 2))
    dead = len(truth[2]["dead"])
    assert grade.reason.startswith(f"io_group 2 tile 2: {dead:,} of ")
    assert grade.reason.endswith("channels dead vs reference run ref-1")


def test_channels_per_status_match_the_injected_faults(runs, reference) -> None:
    path = runs["faulty"]
    status = channel_statuses(path, reference, masks_from_file(path))
    for group, by_status in injected(path).items():
        for name, channels in by_status.items():
            if not channels:
                continue
            io_channel, chip, channel = np.array(sorted(channels)).T
            keys = channel_key(group, io_channel, chip, channel)
            found = np.mean([status.get(k) == name for k in keys.tolist()])
            assert found >= 0.95, (group, name, found)


def test_masked_channels_are_disabled_not_dead(runs, reference, faulty) -> None:
    masked = injected(runs["faulty"])[1]["disabled"]
    assert len(masked) == 30
    counts = faulty.channels[(1, 1)]
    assert counts["disabled"] == 30
    # the two dead chips, nothing else: masked channels do not count as dead
    dead = len(injected(runs["faulty"])[1]["dead"])
    assert dead == 128
    assert dead <= counts["dead"] <= dead + 3
    without_masks = _evaluate(runs["faulty"], reference)
    assert without_masks.channels[(1, 1)]["dead"] >= dead + 30


def test_the_clean_run_of_another_seed_grades_good(clean) -> None:
    problems = [g for g in clean.grades if g.grade not in (GOOD, NOT_ENOUGH_DATA)]
    assert problems == []
    judged = {(g.check, g.io_group, g.tile) for g in clean.grades if g.grade == GOOD}
    for check in FAULT_TILES:
        assert {(check, 1, 1), (check, 1, 2), (check, 2, 1), (check, 2, 2)} <= judged


def test_the_clean_run_flags_under_one_percent_of_any_tile(clean) -> None:
    for counts in clean.channels.values():
        total = sum(counts.values())
        assert total > 6000
        assert counts["dead"] + counts["shifted"] + counts["noisy"] + counts["hot"] < 0.01 * total


def test_a_short_run_is_not_enough_data_not_bad(tmp_path, reference) -> None:
    path = simulate(tmp_path / "short.h5", 4, Faults(cabled_tiles=2), packets=3_000)
    result = _evaluate(path, reference)
    by_check = {}
    for grade in result.grades:
        by_check.setdefault(grade.check, set()).add(grade.grade)
    assert BAD not in {g.grade for g in result.grades}
    for check in ("dead_channels", "hot_vs_reference", "shifted_channels", "noisy_channels",
                  "parity_errors", "fifo_full"):
        assert by_check[check] == {NOT_ENOUGH_DATA}, check
    reasons = [g.reason for g in result.grades if g.check == "dead_channels"]
    assert all("not enough data" in r for r in reasons)
