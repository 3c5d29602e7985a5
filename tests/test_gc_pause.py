"""Cyclic collection held while batches are built, and always given back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from eventsource.gc_pause import BatchedCollection, paused_gc


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_paused_gc_holds_collection_for_the_block_only() -> None:
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collection_is_held_between_batches_and_let_run_after_every_nth() -> None:
    collection = BatchedCollection(every=3)
    seen = []
    for _ in range(7):
        with collection.batch():
            assert not gc.isenabled()
        seen.append(gc.isenabled())
    assert seen == [False, False, True, False, False, True, False]
    collection.release()
    assert gc.isenabled()


def test_a_failing_batch_still_counts_and_release_gives_collection_back() -> None:
    collection = BatchedCollection(every=8)
    with pytest.raises(RuntimeError), collection.batch():
        raise RuntimeError("the batch failed")
    assert not gc.isenabled()  # held on: the loop decides whether to go on
    collection.release()
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    collection = BatchedCollection(every=2)
    for _ in range(4):
        with collection.batch():
            assert not gc.isenabled()
        assert not gc.isenabled()
    collection.release()
    assert not gc.isenabled()


def test_cyclic_garbage_made_in_held_batches_is_collected_once_let_run() -> None:
    class Node:
        other: object = None

    collection = BatchedCollection(every=2)
    with collection.batch():
        a, b = Node(), Node()
        a.other, b.other = b, a
        cycle = weakref.ref(a)
        del a, b
    junk = [[] for _ in range(10_000)]  # allocations that would trigger a collection
    assert cycle() is not None  # held after the first batch
    with collection.batch():
        pass
    junk = [[] for _ in range(10_000)]
    del junk
    assert cycle() is None  # the collector's own trigger found it
