"""The agent's TLS: whom it trusts, and what a failed handshake means in words.

The room network is hostile, so the agent verifies the controller's certificate
and host name before a byte of a token leaves the machine. With ``ca_file`` the
agent trusts that CA alone (the room CA labfleet made, installed by the
playbook); without it, the system's certificate authorities.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

SYSTEM_CAS = "the system's certificate authorities"


@functools.lru_cache(maxsize=4)
def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate chain and host name checked, TLS 1.2 or newer; raises OSError/ssl.SSLError on a bad ca_file.

    One context per CA file for the whole process (an SSLContext is safe to share between threads): the
    agent's clients and its config check use the same one, which keeps the agent inside its RSS budget.
    A changed file takes effect when the agent restarts (the playbook restarts it when it installs one).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def describe_failure(exc: ssl.SSLError, ca_file: Path | None) -> str:
    """One line an operator can act on: an untrusted certificate, or no TLS on the other side."""
    trusted = f"ca_file {ca_file}" if ca_file else SYSTEM_CAS
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"refused the controller's certificate ({exc.verify_message}): it is not signed by {trusted} "
                f"for this host name; nothing was sent. Wrong ca_file, wrong URL, or someone is "
                f"intercepting the room network")
    return f"TLS handshake failed ({exc.reason or exc}): does the controller serve https on this port?"
