"""A worker's batch size: about a quarter of a second of work, within its cap."""

from __future__ import annotations

import pytest

from eventsource import ConfigurationError
from eventsource.projections.sizing import FIRST_BATCH, BatchSizer


def test_the_first_batch_is_small_until_the_speed_is_known() -> None:
    assert BatchSizer(20_000).size == FIRST_BATCH == 100
    assert BatchSizer(10).size == 10  # never above the cap


def test_a_fast_fold_grows_to_the_cap_and_a_slow_one_shrinks_to_its_target() -> None:
    sizer = BatchSizer(20_000, target=0.25)
    sizer.took(100, 0.005)  # 50 us an event: 5,000 make the target
    assert sizer.size == 5000
    sizer.took(5000, 0.05)  # faster still: the cap
    assert sizer.size == 20_000
    sizer.took(20_000, 10.0)  # the handler slowed to 0.5 ms an event
    assert sizer.size == 500


def test_a_very_slow_handler_gets_one_event_a_batch() -> None:
    sizer = BatchSizer(1000, target=0.25)
    sizer.took(3, 6.0)
    assert sizer.size == 1


def test_an_empty_poll_changes_nothing() -> None:
    sizer = BatchSizer(20_000, target=0.25)
    sizer.took(100, 0.01)
    before = sizer.size
    sizer.took(0, 0.2)
    assert sizer.size == before


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="batch_size must be at least 1 event, not 0"):
        BatchSizer(0)
