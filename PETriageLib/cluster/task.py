"""A series to screen, small enough that a driver can hold millions of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from PETriageLib.screening.many_series import SeriesSource


@dataclass(frozen=True)
class SeriesTask:
    """One series to screen: local ``files``, or a ``dicomweb_url`` + study to fetch it from."""

    series_uid: str
    description: str = ""
    modality: str = ""
    num_instances: int = 0
    files: tuple[str, ...] = ()
    dicomweb_url: str = ""
    study_uid: str = ""
    source: str = ""  # where the series can be found again, for the worklist

    @classmethod
    def from_source(cls, src: SeriesSource) -> "SeriesTask":
        return cls(src.series_uid, src.description, src.modality, len(src.files), tuple(src.files),
                   source=src.source)

    def as_source(self, files: Sequence[str]) -> SeriesSource:
        return SeriesSource(list(files), self.series_uid, self.description, self.modality, self.source)
