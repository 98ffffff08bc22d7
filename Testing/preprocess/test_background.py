"""Inputs prepared ahead in a background thread: the same results in the same order as made in the
loop, a bounded queue, the producer's exception at the consumer, cancel and early exit stop it."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from PETriageLib.preprocess.background import ahead
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import PreprocessConfig, prepare_slices


def test_prepared_ahead_equals_prepared_in_the_loop(phantom_study):
    vol = phantom_study.volume
    lungs = analyse_lungs(vol)
    cfg = PreprocessConfig(["pe", "lung"], input_size=64, context=1)
    batches = [list(range(s, min(s + 5, vol.num_slices))) for s in range(0, vol.num_slices, 5)]
    make = lambda idx: prepare_slices(vol, idx, cfg, lungs=lungs).images  # noqa: E731
    got = list(ahead(make, batches, depth=2))
    assert len(got) == len(batches)
    for idx, images in zip(batches, got):
        np.testing.assert_array_equal(images, make(idx))


def test_the_queue_holds_at_most_depth_results():
    made = []
    it = ahead(lambda i: made.append(i) or i, range(20), depth=2)
    first = next(it)
    time.sleep(0.3)  # time for the producer to run ahead as far as it may
    # one taken, two waiting in the queue, one made and blocked on the full queue
    assert first == 0 and len(made) == 4
    assert list(it) == list(range(1, 20)) and not it.running


def test_an_exception_in_the_producer_reaches_the_consumer():
    def make(i: int) -> int:
        if i == 3:
            raise ValueError("slice 3 is broken")
        return i * 10

    it = ahead(make, range(10), depth=1)
    got = []
    with pytest.raises(ValueError, match="slice 3 is broken"):
        for x in it:
            got.append(x)
    assert got == [0, 10, 20]  # everything before the failing item, in order
    assert not it.running and it.made == 3


def test_cancel_stops_the_producer():
    cancel = threading.Event()
    started = []

    def make(i: int) -> int:
        started.append(i)
        if i == 2:
            cancel.set()
        return i

    it = ahead(make, range(100), depth=1, cancel=cancel)
    assert list(it) == [0, 1, 2]  # the item being made is finished, no new one is started
    assert started == [0, 1, 2] and not it.running


def test_leaving_early_stops_and_joins_the_thread():
    with ahead(lambda i: time.sleep(0.01) or i, range(1000), depth=1) as it:
        assert next(it) == 0
    assert not it.running and it.made < 10
    with pytest.raises(ValueError, match="depth must be >= 1"):
        ahead(lambda i: i, [1], depth=0)
