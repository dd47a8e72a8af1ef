"""Bulk work runs with the cyclic collector paused, and leaves it as it found it (bridge/gcpause.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridge import gcpause
from bridge.model import NS_PER_S
from bridge.sources.classify import Classifier, Window
from tests.conftest import T0


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_collection_is_off_while_the_work_runs_and_on_after() -> None:
    gc.enable()
    seen = gcpause.paused(gc.isenabled)()
    assert (seen, gc.isenabled()) == (False, True)


def test_collection_comes_back_when_the_work_raises() -> None:
    gc.enable()

    @gcpause.paused
    def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fails()
    assert gc.isenabled()


def test_collection_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    assert gcpause.paused(gc.isenabled)() is False
    assert not gc.isenabled()


def test_a_scrape_is_classified_with_collection_off() -> None:
    gc.enable()
    seen: list[bool] = []
    classifier = Classifier(on_family=lambda family: seen.append(gc.isenabled()))
    classifier.ingest(
        '# TYPE a gauge\na{x="1"} 1\n# TYPE b_total counter\nb_total 2\n',
        Window(int(T0) * NS_PER_S, int(T0 + 60) * NS_PER_S),
    )
    assert seen == [False, False]
    assert gc.isenabled()


class Node:
    """A tracked object in a cycle with itself, so only the cyclic collector could free it."""

    def __init__(self) -> None:
        self.me = self


def test_bulk_work_survivors_go_to_the_old_generation_and_stay_collectable() -> None:
    gc.enable()
    gc.collect()
    kept = gcpause.paused(lambda: [Node() for _ in range(gcpause.PROMOTE_AFTER + 1000)])()
    ids = {id(node) for node in kept}
    old = {id(o) for o in gc.get_objects(generation=2)}
    assert ids <= old
    assert gc.get_count()[0] < 100
    assert gc.get_freeze_count() == 0
    del kept
    assert gc.collect() >= gcpause.PROMOTE_AFTER + 1000  # in a cycle each: only a collection frees them


def test_small_work_leaves_its_objects_young() -> None:
    gc.enable()
    gc.collect()
    kept = gcpause.paused(lambda: [Node() for _ in range(100)])()
    old = {id(o) for o in gc.get_objects(generation=2)}
    assert not {id(node) for node in kept} & old


def test_what_someone_else_froze_stays_frozen() -> None:
    gc.enable()
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        kept = gcpause.paused(lambda: [Node() for _ in range(gcpause.PROMOTE_AFTER + 1000)])()
        assert gc.get_freeze_count() == frozen
        assert not {id(node) for node in kept} & {id(o) for o in gc.get_objects(generation=2)}
    finally:
        gc.unfreeze()
