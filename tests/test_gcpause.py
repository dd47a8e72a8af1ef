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
