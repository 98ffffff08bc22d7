"""TLS for the listener (DICOM over TLS, PS3.15 annex B): the server context that receives and the
client context that sends results, from PEM files. A file that is missing or does not load is
said at start, before anything is accepted."""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from PETriageLib.errors import PETriageError


class TlsError(PETriageError):
    """A TLS certificate, key or CA file cannot be used."""


@dataclass(frozen=True)
class TlsConfig:
    cert: Path | None = None  # this node's certificate (PEM); presented to senders and to the destination
    key: Path | None = None  # its private key (PEM, unencrypted)
    ca: Path | None = None  # CA certificates (PEM) that peers' certificates must chain to
    require_client_cert: bool = False  # refuse senders without a certificate signed by ``ca``

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
        if self.require_client_cert and self.ca is None:
            raise TlsError("requiring client certificates needs the CA that signs them (--tls-ca)")
        for name, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if path is not None and not Path(path).is_file():
                raise TlsError(f"TLS {name} file {path} does not exist")


def _context(purpose: ssl.Purpose, config: TlsConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=None if config.ca is None else str(config.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cert is not None:
        try:
            ctx.load_cert_chain(str(config.cert), str(config.key))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"TLS certificate {config.cert} with key {config.key} cannot be loaded: {exc}") from exc
    return ctx


def server_context(config: TlsConfig) -> ssl.SSLContext:
    """What ``petriage listen`` receives with: its certificate; client certificates checked against
    the CA (required with ``require_client_cert``, else verified only when a client sends one)."""
    if config.cert is None:
        raise TlsError("a TLS listener needs its certificate and key (--tls-cert, --tls-key)")
    ctx = _context(ssl.Purpose.CLIENT_AUTH, config)
    if config.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif config.ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """What the results are sent with: the destination's certificate is verified (against the CA, else
    the system's trust store) including its host name; this node's certificate is presented when given."""
    return _context(ssl.Purpose.SERVER_AUTH, config)
