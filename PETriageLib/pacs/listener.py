"""The listener as one object: the SCP, the settle loop, the triage workers and the sender, over
one spool folder and its queue. Recovery from a crash happens at start."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PETriageLib.pacs.scp import ScpConfig, start_scp
from PETriageLib.pacs.send import Destination, Sender
from PETriageLib.pacs.series_queue import SeriesQueue
from PETriageLib.pacs.tls import TlsConfig, client_context, server_context
from PETriageLib.pacs.worker import Worker
from PETriageLib.screening.one_series import ScreenOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenConfig:
    spool: Path
    scp: ScpConfig = ScpConfig()
    destination: Destination | None = None
    settle_s: float = 30.0
    workers: int = 1
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    send_tls: TlsConfig | None = None  # send the results over TLS


class Listener:
    def __init__(self, config: ListenConfig, make_cascade: Callable[[], Any],
                 options: ScreenOptions = ScreenOptions()) -> None:
        self.config, self.make_cascade, self.options = config, make_cascade, options
        self.stop = threading.Event()
        self.queue = SeriesQueue(config.spool)
        self.threads: list[threading.Thread] = []
        self.server: Any = None

    def start(self) -> None:
        """Load the models (a bad model file stops here, before anything is accepted), recover, serve."""
        c = self.config
        if c.scp.tls is not None:  # a bad certificate stops here too
            server_context(c.scp.tls)
        if c.send_tls is not None:
            client_context(c.send_tls)
        cascades = [self.make_cascade() for _ in range(max(1, c.workers))]
        self.queue.recover()
        send = c.destination is not None
        self.threads = [Worker(self.queue, cascade, self.options, c.spool, send, self.stop,
                               name=f"triage-worker-{n}") for n, cascade in enumerate(cascades)]
        if send:
            self.threads.append(Sender(self.queue, c.destination, c.scp.ae_title, self.stop,
                                       c.retry_base_s, c.retry_max_s, tls=c.send_tls))
        self.threads.append(threading.Thread(target=self._settle_loop, name="settle", daemon=True))
        for t in self.threads:
            t.start()
        self.server = start_scp(c.scp, c.spool, self.queue)

    def _settle_loop(self) -> None:
        while not self.stop.is_set():
            for uid in self.queue.settle(self.config.settle_s):
                log.info("series %s complete (nothing new for %.0f s): queued for triage", uid, self.config.settle_s)
            self.stop.wait(min(1.0, self.config.settle_s / 4))

    def close(self) -> None:
        """Stop receiving, let the current triage finish, then close the queue."""
        if self.server is not None:
            self.server.shutdown()
        self.stop.set()
        for t in self.threads:
            t.join()
        self.queue.close()
