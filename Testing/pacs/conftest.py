"""Fixtures of the PACS tests: a real Orthanc, and `petriage listen` as a subprocess (SIGKILL-able)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

from support.listener import ListenerError, ListenerProcess, wait_for_echo
from support.listener import start_listener as run_listener
from support.orthanc import free_port, start_orthanc


ORTHANC_JOBS = 4  # C-STORE jobs Orthanc runs at once: four concurrent associations to the listener


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"), jobs=ORTHANC_JOBS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def start_listener(tiny_checkpoints, orthanc):
    """start(spool) -> a running `petriage listen` that Orthanc knows as modality 'petriage'."""
    started: list[ListenerProcess] = []

    def start(spool: Path, settle_s: float = 1.5, destination: str | None = None,
              options: Sequence[str] = ()) -> ListenerProcess:
        """``options``: more `petriage listen` options (a repeated one overrides these defaults)."""
        extra = ["--settle", str(settle_s), "--retry-base", "0.5", "--top-k", "2", "--domain-check", "off", *options]
        listener = run_listener(spool, free_port(), destination or orthanc.destination, tiny_checkpoints, extra,
                                spool.parent / f"{spool.name}-listener-{len(started)}.log")
        started.append(listener)
        try:
            wait_for_echo(orthanc, listener)
        except ListenerError as exc:
            pytest.fail(str(exc))
        return listener

    yield start
    for listener in started:
        listener.stop()
