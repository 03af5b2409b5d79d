"""The broker connection's credentials: TLS context (CA pinning, client certificate) and the
password from the environment. Errors name the config field at fault."""

from __future__ import annotations

import ssl

from agent.publish.config import MqttConfig, TlsConfig
from agent.trust import tls as trust_tls


class PublisherConfigError(Exception):
    """The MQTT, TLS or outbox settings cannot work (missing files, half-configured TLS, no
    password, gateway acks required without a gateway key)."""


def build_tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The client TLS context of `mqtt.tls` (`agent.trust.tls`: CA pinning, TLS >= 1.2, the
    client certificate); a bad file is a PublisherConfigError naming the field."""
    try:
        return trust_tls.build_tls_context(tls, "mqtt.tls")
    except trust_tls.TlsConfigError as err:
        raise PublisherConfigError(str(err)) from None


def broker_password(mqtt: MqttConfig) -> str | None:
    """The broker password from the environment (PublisherConfigError naming the variable)."""
    try:
        return mqtt.password()
    except ValueError as err:
        raise PublisherConfigError(str(err)) from None
