"""Key creation and export: restrictive modes, never overwritten, device-config form."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from agent.gateway.keys import KeyFileError, KeyRole, export_yaml, init_keys, key_path, load_key
from agent.ota.config import OtaConfig
from agent.trust.config import TrustConfig
from agent.trust.signing import key_id


def test_init_creates_private_files_0600_in_a_0700_dir(tmp_path: Path) -> None:
    """Both private keys are created mode 0600 in a directory of mode 0700."""
    keys = tmp_path / "keys"
    init_keys(keys)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for role in KeyRole:
        assert stat.S_IMODE(key_path(keys, role).stat().st_mode) == 0o600


def test_init_never_replaces_an_existing_key(tmp_path: Path) -> None:
    """A second init keeps the keys (same ids) and reports them as existing."""
    first = init_keys(tmp_path)
    second = init_keys(tmp_path)
    for role in KeyRole:
        assert first[role][1] is True and second[role][1] is False
        assert first[role][0].key_id == second[role][0].key_id


def test_release_and_gateway_keys_differ(tmp_path: Path) -> None:
    """The release key and the gateway key are two different keys."""
    info = init_keys(tmp_path)
    assert info[KeyRole.RELEASE][0].key_id != info[KeyRole.GATEWAY][0].key_id


def test_export_is_a_valid_device_trust_section_without_private_material(tmp_path: Path) -> None:
    """The exported YAML validates as the device's trust and ota sections, no private key."""
    init_keys(tmp_path)
    text = export_yaml(tmp_path)
    assert OtaConfig.model_validate(yaml.safe_load(text)["ota"]).enabled
    cfg = TrustConfig.model_validate(yaml.safe_load(text)["trust"])
    assert list(cfg.release_keys) == [key_id(load_key(tmp_path, KeyRole.RELEASE))]
    assert list(cfg.gateway_keys) == [key_id(load_key(tmp_path, KeyRole.GATEWAY))]
    for role in KeyRole:
        assert key_path(tmp_path, role).read_text().strip() not in text


@pytest.mark.parametrize(
    "mode",
    [
        0o640,  # group-readable
        0o604,  # world-readable
    ],
)
def test_loading_a_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A private key file with group/other permissions is refused with a chmod hint."""
    init_keys(tmp_path)
    key_path(tmp_path, KeyRole.GATEWAY).chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(tmp_path, KeyRole.GATEWAY)


def test_missing_key_says_how_to_create_it(tmp_path: Path) -> None:
    """Loading a key that does not exist points at `edge-gateway keys init`."""
    with pytest.raises(KeyFileError, match="keys init"):
        load_key(tmp_path, KeyRole.RELEASE)
