"""`GatewayClient`: the one way the CLI talks to a running gateway (httpx, admin token).

The admin token comes from `$EDGE_GATEWAY_ADMIN_TOKEN`, else from `<keys_dir>/admin.token`
(written by `edge-gateway admin-token`, mode 0600; a file readable by group or others is
refused).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import httpx

from agent.gateway.config import GatewayConfig, HttpConfig
from agent.util.files import atomic_write

ADMIN_TOKEN_ENV = "EDGE_GATEWAY_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin.token"


class GatewayClientError(Exception):
    """The gateway could not be reached, refused the call, or no admin token was found."""


def admin_token_path(keys_dir: Path) -> Path:
    return keys_dir / ADMIN_TOKEN_FILE


def save_admin_token(keys_dir: Path, token: str) -> Path:
    """Write the token file (directory 0700, file 0600), replacing an older one."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = admin_token_path(keys_dir)
    atomic_write(path, token.encode() + b"\n", mode=0o600)
    return path


def read_admin_token(keys_dir: Path) -> str:
    """The admin token: `$EDGE_GATEWAY_ADMIN_TOKEN`, else the 0600 file in `keys_dir`."""
    env = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if env:
        return env
    path = admin_token_path(keys_dir)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise GatewayClientError(
                f"{path} is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except OSError as err:
        raise GatewayClientError(f"cannot read {path}: {err}") from None
    if not token:
        raise GatewayClientError(
            f"no admin token: set ${ADMIN_TOKEN_ENV} or run `edge-gateway admin-token` "
            f"(writes {path})"
        )
    return token


def local_base_url(http: HttpConfig) -> str:
    """The URL of the gateway on this machine: its bind address, or loopback for a wildcard."""
    host = "127.0.0.1" if http.host in ("0.0.0.0", "", "::") else http.host
    return f"http://{f'[{host}]' if ':' in host else host}:{http.port}"


class GatewayClient:
    """Calls to the admin API; every error becomes a GatewayClientError with the server's words."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    @classmethod
    def from_config(cls, cfg: GatewayConfig) -> GatewayClient:
        return cls(local_base_url(cfg.http), read_admin_token(cfg.keys_dir))

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call; the decoded JSON answer, or GatewayClientError."""
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise GatewayClientError(
                f"cannot reach the gateway at {self.base_url} ({err}); "
                "is `edge-gateway serve` running?"
            ) from None
        is_json = resp.headers.get("content-type", "").startswith("application/json")
        data = resp.json() if is_json else {}
        if resp.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise GatewayClientError(message or f"HTTP {resp.status_code} from {path}")
        return data

    # -- the calls ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/v1/health")

    def devices(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/devices")

    def enroll(self, device: str, token_sha256: str | None = None) -> dict[str, Any]:
        body = {"device": device, "token_sha256": token_sha256}
        return self.request("POST", "/v1/devices", body)

    def remove(self, device: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/devices/{device}")

    def rollouts(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/rollouts")

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        return self.request("GET", f"/v1/rollouts/{rollout_id}")

    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/rollouts", body)

    def abort(self, rollout_id: int, reason: str) -> dict[str, Any]:
        path = f"/v1/rollouts/{rollout_id}/abort"
        return self.request("POST", path, {"reason": reason})

    def rollback(self, rollout_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/v1/rollouts/{rollout_id}/rollback", body)
