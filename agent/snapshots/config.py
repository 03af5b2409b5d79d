"""The `snapshots:` section of the agent config."""

from __future__ import annotations

from pydantic import Field

from agent.util.models import FrozenModel

MIB = 1 << 20


class SnapshotsConfig(FrozenModel):
    enabled: bool = True
    """Keep the best frame of every event as JPEG files under `<state_dir>/snapshots/` and publish
    it retained on `edge/<device>/cameras/<camera>/snapshot/<label>`. Only acts when
    `events.enabled`."""
    quota_mb: float = Field(200.0, gt=0)
    """Most MiB the snapshot files may use; the oldest go first."""
    jpeg_quality: int = Field(85, ge=30, le=100)
    """JPEG quality of the stored files."""
    edge_margin_px: int = Field(2, ge=0, le=100)
    """A box within this many pixels of the frame edge is cut by it: any uncut frame beats a cut
    one, whatever the scores."""
    crop_padding: float = Field(0.15, ge=0, le=1)
    """Margin around the box in the crop, as a share of its size."""
    min_interval_s: float = Field(5.0, ge=0)
    """Per event, a better frame is written and published at most this often; the best one is always
    written and published at the event's `end`."""
    publish: bool = True
    """Publish the snapshot (the full frame, box drawn)."""
    publish_max_bytes: int = Field(256 * 1024, ge=16 * 1024, le=900 * 1024)
    """Largest published snapshot. A bigger file is re-encoded at a lower quality and size for the
    topic (the file keeps its quality); stays well under the broker's `max_packet_size` (1 MiB in
    configs/mosquitto)."""

    @property
    def quota_bytes(self) -> int:
        return int(self.quota_mb * MIB)
