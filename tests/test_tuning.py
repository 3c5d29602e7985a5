"""The interpreter tuning the `eventsource` command may opt into, always given back."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from eventsource.tuning import InterpreterTuning


@pytest.fixture(autouse=True)
def interpreter_defaults() -> Iterator[None]:
    before = sys.getswitchinterval()
    gc.enable()
    sys.setswitchinterval(0.005)
    yield
    gc.enable()
    sys.setswitchinterval(before)


class Knot:
    other: object = None


def knot() -> weakref.ref[Knot]:
    a, b = Knot(), Knot()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_tuning_holds_the_collector_and_runs_it_every_nth_batch() -> None:
    with InterpreterTuning(collect_every=3) as tuning:
        assert not gc.isenabled()
        assert sys.getswitchinterval() == pytest.approx(0.001)
        ref = knot()
        tuning.batch_done()
        tuning.batch_done()
        assert ref() is not None  # cyclic garbage waits for the third batch
        tuning.batch_done()
        assert ref() is None
    assert gc.isenabled()
    assert sys.getswitchinterval() == pytest.approx(0.005)
    assert gc.get_freeze_count() == 0


def test_tuning_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    with InterpreterTuning():
        pass
    assert not gc.isenabled()
