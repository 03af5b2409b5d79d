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

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """One call; the decoded JSON answer, or GatewayClientError."""
        resp = self._send(method, path, body, params)
        return self._answer(resp, path)

    def _send(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            return self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as err:
            raise GatewayClientError(
                f"cannot reach the gateway at {self.base_url} ({err}); "
                "is `edge-gateway serve` running?"
            ) from None

    @staticmethod
    def _answer(resp: httpx.Response, path: str) -> Any:
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

    # -- review of intake items (agent.gateway.api.review) --------------------------------------

    def review_items(
        self, flt: dict[str, Any], limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        """Items matching `flt` (device, camera, day, class, status, ids) and counts per status."""
        params = {k: str(v) for k, v in flt.items() if v is not None and k not in ("ids", "all")}
        if flt.get("ids"):
            params["ids"] = ",".join(_checked_ids(flt["ids"]))
        params.update(limit=str(limit), offset=str(offset))
        return self.request("GET", "/v1/review/items", params=params)

    def review_facets(self) -> dict[str, list[str]]:
        """Distinct devices, cameras, days and class names of the items."""
        return self.request("GET", "/v1/review/facets")

    def review_item(self, item_id: str) -> dict[str, Any]:
        """One item with its labels and the teacher's original."""
        return self.request("GET", f"/v1/review/items/{_checked_ids([item_id])[0]}")

    def review_image(self, item_id: str) -> bytes:
        """The item's JPEG bytes."""
        path = f"/v1/review/items/{_checked_ids([item_id])[0]}/image"
        resp = self._send("GET", path)
        if resp.status_code >= 400:
            self._answer(resp, path)
        return resp.content

    def review_action(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST an accept, reject or relabel (`body`: filter, by, reason, edit)."""
        if action not in ("accept", "reject", "relabel"):
            raise GatewayClientError(f"unknown review action {action!r}")
        return self.request("POST", f"/v1/review/{action}", body)


def _checked_ids(ids: list[str]) -> list[str]:
    """Item ids, refused here unless well-formed (they become part of a URL path)."""
    from agent.gateway.review import ReviewError, check_item_ids

    try:
        return check_item_ids(list(ids))
    except ReviewError as err:
        raise GatewayClientError(err.message) from None
