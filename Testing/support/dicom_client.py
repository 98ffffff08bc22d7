"""A DICOM peer of the listener for the tests: a client that C-ECHOes and C-STOREs files (optionally
over TLS, in the files' own transfer syntaxes), and a storage SCP that keeps what it is sent."""
from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from support.listener import LISTENER_AET


def _client(calling_ae: str) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def echo(port: int, calling_ae: str = "ORTHANC", tls: ssl.SSLContext | None = None) -> int | None:
    """C-ECHO status, or None when no association was established (refused, or the TLS handshake failed)."""
    ae = _client(calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET,
                         tls_args=None if tls is None else (tls, "127.0.0.1"))
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def store(port: int, files: list[Path], calling_ae: str = "ORTHANC", tls: ssl.SSLContext | None = None) -> list[int]:
    """C-STORE ``files`` in one association, each in its own transfer syntax; their statuses."""
    datasets = [pydicom.dcmread(f) for f in files]
    ae = _client(calling_ae)
    for sop, ts in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}):
        ae.add_requested_context(sop, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET,
                         tls_args=None if tls is None else (tls, "127.0.0.1"))
    if not assoc.is_established:
        raise ConnectionError(f"no association with the listener on port {port}")
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


@dataclass
class StoreScp:
    """A storage SCP on localhost that keeps every dataset it receives (and the peer's certificate)."""

    ae_title: str = "DEST"
    ssl_context: ssl.SSLContext | None = None
    received: list[pydicom.Dataset] = field(default_factory=list)
    server: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, port: int) -> "StoreScp":
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=self.ssl_context,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.port = port
        return self

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.received.append(ds)
        return 0x0000

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
