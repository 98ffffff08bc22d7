"""The Storage SCP: C-ECHO and C-STORE of every storage SOP class in the transfer syntaxes
scanners send, from the calling AE titles allowed (others are rejected at association). Every
object is accepted into the spool; what cannot be triaged (not CT, corrupt) is skipped later
with its reason, so the sender's job never fails on one bad file."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from PETriageLib.pacs.series_queue import SeriesQueue
from PETriageLib.pacs.spool import spool_instance
from PETriageLib.pacs.tls import TlsConfig, server_context

log = logging.getLogger(__name__)

# What scanners and PACS send: uncompressed, deflated, JPEG (baseline, extended, lossless), JPEG-LS,
# JPEG 2000 and RLE; all decodable by pydicom with the pylibjpeg plugins PETriage installs.
TRANSFER_SYNTAXES = [uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian,
                     uid.DeflatedExplicitVRLittleEndian, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit,
                     uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEGLSNearLossless,
                     uid.JPEG2000Lossless, uid.JPEG2000, uid.RLELossless]
FAILURE_CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class ScpConfig:
    ae_title: str = "PETRIAGE"
    port: int = 11112
    bind: str = "127.0.0.1"  # localhost only unless a PACS elsewhere must reach it
    allowed_aes: tuple[str, ...] = ()  # empty: any calling AE title
    tls: TlsConfig | None = None  # receive over TLS only (a plain-TCP sender fails at the handshake)


def build_ae(config: ScpConfig) -> AE:
    ae = AE(ae_title=config.ae_title)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    if config.allowed_aes:
        ae.require_calling_aet = list(config.allowed_aes)
    ae.maximum_pdu_size = 0  # no limit on what we receive
    return ae


def store_handler(spool: Path, queue: SeriesQueue) -> Any:
    def handle_store(event: Any) -> int:
        calling = event.assoc.requestor.ae_title
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            spooled = spool_instance(spool, queue, ds, event.encoded_dataset(), calling)
        except Exception as exc:  # a file we cannot even store: say so to the sender, keep listening
            log.error("C-STORE from %s refused: %s: %s", calling, type(exc).__name__, exc)
            return FAILURE_CANNOT_UNDERSTAND
        if not spooled.received.new:
            log.debug("duplicate instance %s from %s ignored", ds.SOPInstanceUID, calling)
        return 0x0000

    return handle_store


def start_scp(config: ScpConfig, spool: Path, queue: SeriesQueue) -> Any:
    """Start serving in background threads; returns the server (``.shutdown()`` stops it)."""
    ae = build_ae(config)
    handlers = [(evt.EVT_C_STORE, store_handler(spool, queue)), (evt.EVT_C_ECHO, lambda event: 0x0000),
                (evt.EVT_REJECTED, lambda event: log.warning(
                    "association from %s rejected (calling AE title not allowed)",
                    event.assoc.requestor.ae_title))]
    ssl_context = None if config.tls is None else server_context(config.tls)
    server = ae.start_server((config.bind, config.port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    log.info("listening as %s on %s:%d%s%s", config.ae_title, config.bind, config.port,
             f" for {', '.join(config.allowed_aes)}" if config.allowed_aes else "",
             "" if config.tls is None else " over TLS" + (" (client certificate required)"
                                                          if config.tls.require_client_cert else ""))
    return server
