"""The switch interval a running worker holds, given back when the last one stops."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from eventsource.switch_interval import short_switch_interval


@pytest.fixture(autouse=True)
def default_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_the_interval_is_shortened_while_held_and_restored_by_the_last_holder() -> None:
    with short_switch_interval(0.001):
        assert sys.getswitchinterval() == pytest.approx(0.001)
        with short_switch_interval(0.001):
            assert sys.getswitchinterval() == pytest.approx(0.001)
        assert sys.getswitchinterval() == pytest.approx(0.001)  # one holder is left
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_a_shorter_interval_already_set_is_kept() -> None:
    sys.setswitchinterval(0.0002)
    with short_switch_interval(0.001):
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    assert sys.getswitchinterval() == pytest.approx(0.0002)


def test_an_interval_someone_else_set_meanwhile_is_left_alone() -> None:
    with short_switch_interval(0.001):
        sys.setswitchinterval(0.003)
    assert sys.getswitchinterval() == pytest.approx(0.003)
