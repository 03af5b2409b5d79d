"""Best-frame snapshots of tracked-object events: choice (pure), JPEG files under the state
dir with a byte quota, and the retained `snapshot/<label>` topic."""
