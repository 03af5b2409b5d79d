"""MQTT over TLS: the one config shape and client context builder the device and the gateway use.

Mutual TLS is the shipped setup (`configs/mosquitto/`): the broker's certificate must chain to
the configured CA (pinning), and the client presents its own certificate, whose CN is its broker
user name for the ACL (`use_identity_as_username`).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator

from agent.util.models import FrozenModel


class TlsConfigError(Exception):
    """A TLS file is missing, unreadable or invalid; the message names the field."""


class TlsConfig(FrozenModel):
    """TLS settings of an MQTT client (the `tls:` block under `mqtt:`)."""

    ca_file: Path
    """CA certificate the broker's certificate must chain to."""
    cert_file: Path | None = None
    """Client certificate (PEM), for mutual TLS."""
    key_file: Path | None = None
    """Client private key (PEM), for mutual TLS."""
    insecure_skip_hostname_check: bool = False
    """Do not check the broker's host name against its certificate."""

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLS half-configured: cert_file and key_file must be given together")
        return self


def _check_file(path: Path, field: str) -> None:
    if not path.is_file():
        raise TlsConfigError(f"{field}: {path} does not exist or is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise TlsConfigError(f"{field}: cannot read {path}: {err.strerror}") from None


def build_tls_context(tls: TlsConfig, where: str = "mqtt.tls") -> ssl.SSLContext:
    """A client TLS context that trusts only `tls.ca_file` (CA pinning), TLS >= 1.2.

    Loads the client certificate and key when given. Raises TlsConfigError naming the field
    (under `where`) on a missing, unreadable or invalid file.
    """
    _check_file(tls.ca_file, f"{where}.ca_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(tls.ca_file))
    except ssl.SSLError as err:
        raise TlsConfigError(f"{where}.ca_file: {tls.ca_file} is not a PEM CA: {err}") from None
    if tls.cert_file is not None and tls.key_file is not None:
        _check_file(tls.cert_file, f"{where}.cert_file")
        _check_file(tls.key_file, f"{where}.key_file")
        try:
            ctx.load_cert_chain(certfile=str(tls.cert_file), keyfile=str(tls.key_file))
        except ssl.SSLError as err:
            raise TlsConfigError(
                f"{where}: cannot load cert_file {tls.cert_file} with key_file "
                f"{tls.key_file}: {err.reason or err}"
            ) from None
    ctx.check_hostname = not tls.insecure_skip_hostname_check
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
