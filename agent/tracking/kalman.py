"""Constant-velocity Kalman filter for boxes, batched over all tracks of a camera (pure numpy).

The state of a track is its box corners x1, y1, x2, y2 and their velocities (8 values, the
`trackers` package's XYXY layout), observed directly (H = [I4 0]), with F = [[I4 I4], [0 I4]],
process noise Q = q I8, measurement noise R = r I4 and initial covariance P0 = diag(p0_pos I4,
p0_vel I4). Because P0, Q and R treat the four coordinates alike and F and H never mix them,
every covariance the filter ever holds is the same 2x2 block [[a, b], [b, c]] (position
variance, position-velocity covariance, velocity variance) for each coordinate:
P = kron([[a, b], [b, c]], I4). A track's covariance is therefore three numbers, and predict
and update are closed-form array expressions over all tracks at once: no matrix inverse (the
innovation covariance is (a + r) I4), no per-track Python loop. `full_covariance` expands the
three numbers to the textbook 8x8 matrix (the tests compare the two forms).

Arrays: `pos` and `vel` are (n, 4), `cov` is (n, 3) holding a, b, c; float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Noise:
    """The filter's tuning. The defaults are ByteTrack's in the `trackers` package (identity
    initial covariance, measurement noise 0.1, process noise 0.01, in pixels squared)."""

    q: float = 0.01
    r: float = 0.1
    p0_pos: float = 1.0
    p0_vel: float = 1.0


def initial_cov(n: int, noise: Noise) -> Array:
    """(n, 3) covariances of tracks just started from a box (velocity unknown: 0)."""
    cov = np.empty((n, 3), np.float64)
    cov[:, 0], cov[:, 1], cov[:, 2] = noise.p0_pos, 0.0, noise.p0_vel
    return cov


def predict(pos: Array, vel: Array, cov: Array, noise: Noise) -> tuple[Array, Array, Array]:
    """One frame ahead: x = F x, P = F P F^T + Q, for every track."""
    a, b, c = cov[:, 0], cov[:, 1], cov[:, 2]
    out = np.empty_like(cov)
    out[:, 0] = a + 2.0 * b + c + noise.q
    out[:, 1] = b + c
    out[:, 2] = c + noise.q
    return pos + vel, vel.copy(), out


def update(
    pos: Array, vel: Array, cov: Array, z: Array, noise: Noise
) -> tuple[Array, Array, Array]:
    """Correct each track with its measured box `z` (n, 4): K = P H^T (H P H^T + R)^-1,
    x += K (z - H x), P = (I - K H) P (equal to Joseph's form for this optimal gain)."""
    a, b, c = cov[:, 0], cov[:, 1], cov[:, 2]
    s = a + noise.r
    k_pos, k_vel = a / s, b / s
    residual = z - pos
    out = np.empty_like(cov)
    out[:, 0] = a * noise.r / s
    out[:, 1] = b * noise.r / s
    out[:, 2] = c - b * b / s
    return pos + k_pos[:, None] * residual, vel + k_vel[:, None] * residual, out


def full_covariance(cov: Array) -> Array:
    """(n, 8, 8): each track's three numbers as the textbook covariance kron(block, I4)."""
    blocks = np.stack([cov[:, [0, 1]], cov[:, [1, 2]]], axis=1)  # (n, 2, 2)
    return np.stack([np.kron(block, np.eye(4)) for block in blocks]).reshape(-1, 8, 8)
