"""Workers as Ray actors: each loads the models once and screens many series; a CPU actor
reserves ``threads`` CPUs (its torch thread count), a GPU actor ``gpus`` GPUs. Two calls run in
each actor at once, so reading the next series overlaps triage of this one."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PETriageLib.cluster.store import SeriesOutcome
from PETriageLib.cluster.task import SeriesTask
from PETriageLib.cluster.screener import CascadeSpec, SeriesScreener
from PETriageLib.screening.one_series import ScreenOptions

log = logging.getLogger(__name__)

CALLS_PER_ACTOR = 2  # one reading while one triages; more only holds more volumes in memory


@dataclass(frozen=True)
class WorkerLost:
    """A series whose worker died (killed, out of memory, node lost) before it answered."""

    error: str


class RayWorkerPool:
    """``workers`` actors on the Ray cluster ``ray.init`` joined; a dead actor is replaced."""

    def __init__(self, workers: int, spec: CascadeSpec, options: ScreenOptions, reports_root: "str | Path",
                 threads: int = 1, gpus: float = 0.0) -> None:
        import ray

        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self._ray = ray
        self._actor_class = ray.remote(SeriesScreener).options(num_cpus=threads, num_gpus=gpus,
                                                                max_concurrency=CALLS_PER_ACTOR)
        # absolute: an actor has its own working folder (and maybe its own machine)
        self._args = (spec, options, str(Path(reports_root).resolve()), threads)
        self.actors = [self._start() for _ in range(workers)]
        self._running: dict[Any, tuple[SeriesTask, Any]] = {}  # object ref -> (task, actor)

    def _start(self) -> Any:
        return self._actor_class.remote(*self._args)

    @property
    def capacity(self) -> int:
        """Calls in flight at most: memory stays bounded however long the archive."""
        return CALLS_PER_ACTOR * len(self.actors)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def models(self) -> dict[str, Any]:
        """The models every worker loaded (they must agree, or the store's key would lie)."""
        found = self._ray.get([a.models.remote() for a in self.actors])
        if any(m != found[0] for m in found):
            raise RuntimeError(f"the workers loaded different models: {found}")
        return found[0]

    def busy_actor(self) -> Any:
        """An actor with a call in flight (None when idle)."""
        return next((actor for _, actor in self._running.values()), None)

    def submit(self, task: SeriesTask) -> None:
        load = {id(a): 0 for a in self.actors}
        for _, actor in self._running.values():
            load[id(actor)] = load.get(id(actor), 0) + 1
        actor = min(self.actors, key=lambda a: load[id(a)])
        self._running[actor.screen.remote(task)] = (task, actor)

    def wait(self) -> list[tuple[SeriesTask, "SeriesOutcome | WorkerLost"]]:
        """At least one finished call: its outcome, or WorkerLost when its actor died."""
        ready, _ = self._ray.wait(list(self._running), num_returns=1)
        answers = []
        for ref in ready:
            task, actor = self._running.pop(ref)
            try:
                answers.append((task, self._ray.get(ref)))
            except self._ray.exceptions.RayActorError as exc:
                log.warning("worker lost while screening %s: %s", task.series_uid, exc)
                self._replace(actor)
                answers.append((task, WorkerLost(str(exc).splitlines()[0])))
        return answers

    def _replace(self, dead: Any) -> None:
        if any(a is dead for a in self.actors):  # once, however many of its calls fail
            self.actors = [self._start() if a is dead else a for a in self.actors]

    def shutdown(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
