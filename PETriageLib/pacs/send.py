"""Results back to a DICOM node: C-STORE of a series' result files, with retries and back-off.
A result that cannot be sent stays pending in the queue and is retried; it is never dropped."""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from PETriageLib.errors import PETriageError
from PETriageLib.pacs.series_queue import SeriesQueue
from PETriageLib.pacs.tls import TlsConfig, client_context

log = logging.getLogger(__name__)


class SendError(PETriageError):
    """The destination refused or could not be reached."""


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Destination":
        """``AET@HOST:PORT``, e.g. ``ORTHANC@127.0.0.1:4242``."""
        m = re.fullmatch(r"([^@]{1,16})@([^:]+):(\d+)", text.strip())
        if not m:
            raise ValueError(f"destination {text!r}: expected AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
        return cls(m.group(1), m.group(2), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def store_files(files: list[Path], dest: Destination, calling_ae: str, timeout_s: float = 30,
                tls: TlsConfig | None = None) -> None:
    """C-STORE every file in one association (over TLS with ``tls``); raises SendError on any refusal."""
    datasets = [pydicom.dcmread(f) for f in files]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    tls_args = None if tls is None else (client_context(tls), dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        raise SendError(f"no association with {dest}" + ("" if tls is None else " over TLS"))
    try:
        for path, ds in zip(files, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None or code not in (0x0000, 0xB000, 0xB006, 0xB007):
                raise SendError(f"{dest} refused {path.name}: status "
                                f"{'none (connection lost)' if code is None else hex(code)}")
    finally:
        assoc.release() if assoc.is_established else assoc.abort()


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds before retry number ``attempts + 1``: doubling from ``base_s``, at most ``max_s``."""
    return min(max_s, base_s * 2 ** attempts)


class Sender(threading.Thread):
    """Sends the results of done series until ``stop`` is set."""

    def __init__(self, queue: SeriesQueue, dest: Destination, calling_ae: str, stop: threading.Event,
                 base_s: float = 2.0, max_s: float = 300.0, poll_s: float = 0.5, tls: TlsConfig | None = None) -> None:
        super().__init__(name="result-sender", daemon=True)
        self.queue, self.dest, self.calling_ae, self.stop, self.tls = queue, dest, calling_ae, stop, tls
        self.base_s, self.max_s, self.poll_s = base_s, max_s, poll_s

    def run(self) -> None:
        while not self.stop.is_set():
            for row in self.queue.due_sends():
                files = sorted((Path(row.result_dir) / "dicom").glob("*.dcm"))
                try:
                    store_files(files, self.dest, self.calling_ae, tls=self.tls)
                except Exception as exc:  # never dropped: retried after the back-off
                    wait = backoff_s(row.send_attempts, self.base_s, self.max_s)
                    log.warning("series %s: results not sent to %s (%s); retry in %.0f s", row.series_uid,
                                self.dest, exc, wait)
                    self.queue.send_failed(row.series_uid, str(exc), wait)
                    continue
                self.queue.sent(row.series_uid, row.result_dir)
                log.info("series %s: %d result objects sent to %s", row.series_uid, len(files), self.dest)
            self.stop.wait(self.poll_s)
