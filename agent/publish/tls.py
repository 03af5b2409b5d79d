"""The broker connection's credentials: TLS context (CA pinning, client certificate) and the
password from the environment. Errors name the config field at fault."""

from __future__ import annotations

import ssl
from pathlib import Path

from agent.publish.config import MqttConfig, TlsConfig


class PublisherConfigError(Exception):
    """The MQTT, TLS or outbox settings cannot work (missing files, half-configured TLS, no
    password, gateway acks required without a gateway key)."""


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise PublisherConfigError(f"mqtt.tls.{what}: {path} does not exist or is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise PublisherConfigError(f"mqtt.tls.{what}: cannot read {path}: {err.strerror}") from None


def build_tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client TLS context that trusts only `tls.ca_file` (CA pinning), TLS >= 1.2.

    Loads the client certificate and key when given. Raises PublisherConfigError naming the
    field on a missing, unreadable or invalid file, or on a certificate without its key.
    """
    if (tls.cert_file is None) != (tls.key_file is None):
        raise PublisherConfigError("mqtt.tls: cert_file and key_file must be given together")
    _check_file(tls.ca_file, "ca_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(tls.ca_file))
    except ssl.SSLError as err:
        raise PublisherConfigError(
            f"mqtt.tls.ca_file: {tls.ca_file} is not a PEM CA: {err}"
        ) from None
    if tls.cert_file is not None and tls.key_file is not None:
        _check_file(tls.cert_file, "cert_file")
        _check_file(tls.key_file, "key_file")
        try:
            ctx.load_cert_chain(certfile=str(tls.cert_file), keyfile=str(tls.key_file))
        except ssl.SSLError as err:
            raise PublisherConfigError(
                f"mqtt.tls: cannot load cert_file {tls.cert_file} with key_file "
                f"{tls.key_file}: {err.reason or err}"
            ) from None
    ctx.check_hostname = not tls.insecure_skip_hostname_check
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def broker_password(mqtt: MqttConfig) -> str | None:
    """The broker password from the environment (PublisherConfigError naming the variable)."""
    try:
        return mqtt.password()
    except ValueError as err:
        raise PublisherConfigError(str(err)) from None
