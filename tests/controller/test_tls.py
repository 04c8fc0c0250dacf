"""TLS on the room network, controller side: `labfleet init` makes the room CA and a certificate for every
name of the controller, `serve` listens with it (or with the operator's own), and X-Forwarded-* is believed
only from the proxies the operator named."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from cryptography import x509

from controller import bootstrap
from controller.app import create_app
from controller.settings import ConfigurationError, settings_for_tests
from controller.tls import certificate_names, ensure_certificates
from tests.processes import REPO, Controller


def health_over_tls(port: int, server_name: str, context: ssl.SSLContext) -> bytes:
    """GET /api/health from 127.0.0.1:port, verifying the certificate for ``server_name`` (SNI and host check)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(b"GET /api/health HTTP/1.1\r\nHost: controller\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def room_ca_client(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


@pytest.fixture
def tls_controller(tmp_path, database_url):
    ctl = Controller(tmp_path / "ctl", database_url, redis_url="")
    ctl.extra_env["LABFLEET_PUBLIC_URL"] = f"https://lab-controller.test:{ctl.port}"
    ctl.data_dir.mkdir()
    yield ctl
    ctl.stop()


def test_init_makes_a_room_ca_and_a_certificate_for_every_name_that_a_standard_client_verifies(tls_controller):
    ctl = tls_controller
    printed = ctl.init(enroll_uses=1, extra_args=("--tls-name", "192.0.2.10", "--tls-name", "ctl.room.test"))
    tls_dir = ctl.data_dir / "tls"
    ca_file, cert_file = tls_dir / "ca.crt", tls_dir / "server.crt"

    # Public URL host, LABFLEET_HOST, the machine's hostname and every --tls-name; addresses as IP SANs.
    names = {"lab-controller.test", "127.0.0.1", socket.gethostname().lower(), "192.0.2.10", "ctl.room.test"}
    assert names <= set(certificate_names(cert_file))
    san = x509.load_pem_x509_certificate(cert_file.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.10") in san.get_values_for_type(x509.IPAddress)
    assert "192.0.2.10" not in san.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls_dir / "server.key").stat().st_mode) == 0o600
    assert f"Room CA:        {ca_file} (new)" in printed
    assert f"Controller URL: https://lab-controller.test:{ctl.port}" in printed

    ctl.start_web()
    for name in sorted(names):
        assert health_over_tls(ctl.port, name, room_ca_client(ca_file)).startswith(b"HTTP/1.1 200"), name
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|doesn't match"):
        health_over_tls(ctl.port, "elsewhere.test", room_ca_client(ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        health_over_tls(ctl.port, "127.0.0.1", ssl.create_default_context())  # the system's CAs: not ours
    # A client that offers only TLS 1.0/1.1 is refused by the server (its alert, not the client's own limit).
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(ca_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        health_over_tls(ctl.port, "127.0.0.1", old)

    # The CLI verifies with the data dir's CA.
    status = subprocess.run([sys.executable, "-m", "controller.cli.main", "--url", f"https://127.0.0.1:{ctl.port}",
                             "status"], env=ctl.env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "0/0 online" in status.stdout
    other = settings_for_tests(ctl.data_dir.parent / "other")
    ensure_certificates(other)
    env = {**ctl.env(), "LABFLEET_TLS_CA": str(other.tls_dir / "ca.crt")}
    refused = subprocess.run([sys.executable, "-m", "controller.cli.main", "--url", f"https://127.0.0.1:{ctl.port}",
                              "status"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "is not who it claims to be" in refused.stderr and "other/tls/ca.crt" in refused.stderr


def test_init_again_never_replaces_the_ca_and_reissues_the_certificate_only_for_a_new_name(tmp_path, database_url):
    settings = settings_for_tests(tmp_path / "data", database_url=database_url)
    bootstrap.initialize(settings, instructor="i", enroll_uses=1)
    tls_dir = settings.tls_dir
    first = {name: (tls_dir / name).read_bytes() for name in ("ca.crt", "ca.key", "server.crt", "server.key")}

    again = bootstrap.initialize(settings, instructor="i", enroll_uses=1)
    assert {name: (tls_dir / name).read_bytes() for name in first} == first
    assert (again.tls.new_ca, again.tls.new_cert) == (False, False)

    renamed = bootstrap.initialize(settings, instructor="i", enroll_uses=1, tls_names=["new.room.test"])
    assert (renamed.tls.new_ca, renamed.tls.new_cert) == (False, True)
    assert (tls_dir / "ca.crt").read_bytes() == first["ca.crt"] and (tls_dir / "ca.key").read_bytes() == first["ca.key"]
    assert "new.room.test" in certificate_names(tls_dir / "server.crt")
    ca = x509.load_pem_x509_certificate(first["ca.crt"])
    x509.load_pem_x509_certificate((tls_dir / "server.crt").read_bytes()).verify_directly_issued_by(ca)

    # A CA key without its certificate is a broken CA, not a missing one: never replaced silently.
    (tls_dir / "ca.crt").unlink()
    with pytest.raises(ConfigurationError, match="exists without"):
        bootstrap.initialize(settings, instructor="i", enroll_uses=1)
    assert (tls_dir / "ca.key").read_bytes() == first["ca.key"]


def test_the_operators_own_certificate_is_served_and_nothing_is_made(tmp_path, database_url):
    operator = settings_for_tests(tmp_path / "operator")
    ensure_certificates(operator)  # stands in for the operator's own CA and certificate
    ctl = Controller(tmp_path / "ctl", database_url, redis_url="", extra_env={
        "LABFLEET_TLS_CERT": str(operator.tls_dir / "server.crt"),
        "LABFLEET_TLS_KEY": str(operator.tls_dir / "server.key"),
        "LABFLEET_TLS_CA": str(operator.tls_dir / "ca.crt")})
    ctl.data_dir.mkdir()
    try:
        printed = ctl.init(enroll_uses=1)
        assert not (ctl.data_dir / "tls").exists() and "Room CA" not in printed
        assert f"Controller URL: https://127.0.0.1:{ctl.port}" in printed
        ctl.start_web()
        answer = health_over_tls(ctl.port, "localhost", room_ca_client(operator.tls_dir / "ca.crt"))
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        ctl.stop()
    with pytest.raises(ConfigurationError, match="LABFLEET_TLS_CERT and LABFLEET_TLS_KEY go together"):
        settings_for_tests(tmp_path / "x", tls_cert=str(operator.tls_dir / "server.crt"))


# -- X-Forwarded-* only from trusted proxies -----------------------------------------------

def enroll_from(app, token: str, peer: str, forwarded_for: str) -> str:
    """Enroll through the app as a connection from ``peer`` carrying X-Forwarded-For; the node's recorded address."""
    client = app.test_client()
    response = client.post("/api/agent/v1/enroll", environ_base={"REMOTE_ADDR": peer},
                           headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"}, json={
                               "enrollment_token": token, "machine_id": uuid.uuid4().hex, "machine_secret": "s",
                               "name": f"vm-{uuid.uuid4().hex[:6]}", "hostname": "vm", "agent_version": "test"})
    assert response.status_code == 200, response.json
    node_id = response.json["node_id"]
    from controller.models import Node

    with app.extensions["labfleet"].db.session() as session:
        return session.get(Node, node_id).address


@pytest.fixture
def proxied_app(tmp_path, database_url):
    settings = settings_for_tests(tmp_path / "data", database_url=database_url,
                                  trusted_proxies="10.0.0.5, 192.168.7.0/24")
    app = create_app(settings)
    yield app
    app.extensions["labfleet"].heartbeats.close()
    app.extensions["labfleet"].db.dispose()


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored(proxied_app):
    from tests.conftest import Seed

    seed = Seed(api_token="", app=proxied_app)
    assert enroll_from(proxied_app, seed.enrollment_token(), "198.51.100.7", "203.0.113.9") == "198.51.100.7"
    # The peer sits next to a trusted one, or sends the header twice: still itself.
    assert enroll_from(proxied_app, seed.enrollment_token(), "10.0.0.6", "10.0.0.5, 203.0.113.9") == "10.0.0.6"


def test_x_forwarded_for_from_a_trusted_proxy_is_the_client_and_only_its_own_hop_counts(proxied_app):
    from tests.conftest import Seed

    seed = Seed(api_token="", app=proxied_app)
    assert enroll_from(proxied_app, seed.enrollment_token(), "10.0.0.5", "203.0.113.9") == "203.0.113.9"
    # What the client itself claimed comes first; the proxy appends the address it saw: only that is believed.
    assert enroll_from(proxied_app, seed.enrollment_token(), "192.168.7.20", "6.6.6.6, 203.0.113.10") == "203.0.113.10"


@pytest.mark.parametrize("value", ["10.0.0.300", "proxy.example", "10.0.0.0/33"])
def test_a_bad_trusted_proxies_entry_is_refused_by_name(tmp_path, value):
    with pytest.raises(ConfigurationError, match=f"^LABFLEET_TRUSTED_PROXIES: '{value}'"):
        settings_for_tests(tmp_path, trusted_proxies=f"10.0.0.1, {value}")
