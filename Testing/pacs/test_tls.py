"""`petriage listen` over TLS: with a CA and certificates made here, a TLS client with a certificate
of that CA C-ECHOes and C-STOREs a study, the results go to the destination over TLS (its own
certificate checked, ours presented); plain TCP, no certificate or another CA's are refused."""
from __future__ import annotations

import ssl
import time

import pytest

from PETriageLib.cli import main
from PETriageLib.pacs.tls import TlsConfig, TlsError, client_context, server_context
from PETriageLib.phantom import generate_study, write_study
from support.dicom_client import StoreScp, echo, store
from support.listener import ListenerError, start_listener
from support.orthanc import free_port
from support.tls_certs import make_pki

SR, SC, PM = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.30"


def tls_client(ca, leaf=None) -> ssl.SSLContext:
    return client_context(TlsConfig(None if leaf is None else leaf.cert, None if leaf is None else leaf.key, ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_node(pki, tiny_checkpoints, tmp_path_factory):
    """A TLS listener (client certificates required) sending its results to a TLS destination."""
    work = tmp_path_factory.mktemp("tls")
    dest = StoreScp(ssl_context=server_context(TlsConfig(pki.peer.cert, pki.peer.key, pki.ca,
                                                         require_client_cert=True))).start(free_port())
    extra = ["--settle", "1", "--retry-base", "0.5", "--top-k", "2", "--domain-check", "off",
             "--tls-cert", str(pki.listener.cert), "--tls-key", str(pki.listener.key), "--tls-ca", str(pki.ca),
             "--tls-require-client-cert", "--destination-tls"]
    listener = start_listener(work / "spool", free_port(), dest.destination, tiny_checkpoints, extra)
    client = tls_client(pki.ca, pki.peer)
    deadline = time.monotonic() + 60
    while echo(listener.port, tls=client) != 0x0000:
        if listener.process.poll() is not None or time.monotonic() > deadline:
            raise ListenerError(f"the TLS listener did not answer C-ECHO:\n{listener.log()}")
        time.sleep(0.3)
    yield listener, dest, work
    listener.stop()
    dest.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return sorted(write_study(generate_study(61, matrix=128, slices=16, pe=True), out)["series_dir"].glob("*.dcm"))


def test_a_study_sent_over_tls_is_triaged_and_its_results_go_back_over_tls(tls_node, pki, files):
    listener, dest, work = tls_node
    client = tls_client(pki.ca, pki.peer)
    assert echo(listener.port, tls=client) == 0x0000
    assert store(listener.port, files, tls=client) == [0x0000] * 16
    listener.wait_for("SELECT 1 FROM series WHERE send_state='sent'")
    assert listener.query("SELECT state, triage_runs FROM series") == [("done", 1)]
    classes = sorted(str(ds.SOPClassUID) for ds in dest.received)
    assert classes == sorted([SR, SC, SC, PM, PM])  # --top-k 2, two branches: all received over TLS
    assert "over TLS (client certificate required)" in listener.log_path.read_text()


def test_plain_tcp_is_refused_and_tls_still_works_after(tls_node, pki, files):
    listener = tls_node[0]
    assert echo(listener.port) is None
    with pytest.raises(ConnectionError):
        store(listener.port, files[:1])
    assert echo(listener.port, tls=tls_client(pki.ca, pki.peer)) == 0x0000


def test_no_client_certificate_or_another_cas_is_refused(tls_node, pki):
    listener = tls_node[0]
    assert echo(listener.port, tls=tls_client(pki.ca)) is None  # required, none sent
    assert echo(listener.port, tls=tls_client(pki.ca, pki.stranger)) is None  # not signed by --tls-ca
    # and the client refuses a listener whose certificate its CA did not sign
    assert echo(listener.port, tls=tls_client(pki.stranger_ca, pki.peer)) is None


def test_results_are_not_sent_to_a_destination_whose_certificate_fails(pki, files):
    from PETriageLib.pacs.send import Destination, SendError, store_files

    dest = StoreScp(ssl_context=server_context(TlsConfig(pki.stranger.cert, pki.stranger.key))).start(free_port())
    try:
        with pytest.raises(SendError, match="over TLS"):
            store_files(files[:1], Destination.parse(dest.destination), "PETRIAGE",
                        timeout_s=10, tls=TlsConfig(pki.listener.cert, pki.listener.key, pki.ca))
        assert dest.received == []
    finally:
        dest.stop()


def test_tls_options_that_cannot_work_are_refused_with_the_reason(pki, tmp_path, caplog):
    with pytest.raises(TlsError, match="both a certificate and its key"):
        TlsConfig(pki.listener.cert)
    with pytest.raises(TlsError, match="needs the CA"):
        TlsConfig(pki.listener.cert, pki.listener.key, require_client_cert=True)
    with pytest.raises(TlsError, match="does not exist"):
        TlsConfig(tmp_path / "none.crt", pki.listener.key)
    with pytest.raises(TlsError, match="cannot be loaded"):
        server_context(TlsConfig(pki.peer.cert, pki.listener.key))  # a key that is not the certificate's
    assert main(["listen", "--spool", str(tmp_path / "s"), "--tls-key", str(pki.listener.key)]) == 1
    assert "--tls-key needs --tls-cert" in caplog.text
    assert main(["listen", "--spool", str(tmp_path / "s"), "--destination-tls"]) == 1
    assert main(["listen", "--spool", str(tmp_path / "s"), "--tls-ca", str(pki.ca)]) == 1
    assert "--tls-ca needs --tls-cert" in caplog.text
    assert "--destination-tls needs --destination" in caplog.text


def test_the_tls_example_of_the_docs_parses_as_written():
    import re
    import shlex
    from pathlib import Path

    from PETriageLib.cli import build_parser

    doc = (Path(__file__).resolve().parents[2] / "docs" / "pacs.md").read_text()
    block = re.search(r"```\n\s*(petriage listen [^`]*--tls-cert[^`]*)```", doc).group(1)
    argv = shlex.split(block.replace("\\\n", " "))[1:]
    args = build_parser().parse_args(argv)
    assert (args.tls_require_client_cert, args.destination_tls, args.port) == (True, True, 2762)
    assert str(args.tls_ca) == "site-ca.crt" and args.destination == "ORTHANC@pacs.example.org:2762"
