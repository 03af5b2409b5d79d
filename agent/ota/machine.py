"""The per-command OTA state machine: legal transitions, checked.

```
idle ─► downloading ─► verifying ─► (building) ─► loading ─► validating ─► active ─► committed
  │          │             │            │            │            │           └──► rolled_back
  │          └─────────────┴────────────┴────────────┴────────────┴──► failed
  └─► rejected                 (idle ─► loading for a rollback: nothing to download)
```
Every command ends in exactly one terminal state: committed, failed, rolled_back or rejected.
"""

from __future__ import annotations

from agent.contracts.ota import OtaState
from agent.util import transitions
from agent.util.transitions import IllegalTransitionError

__all__ = ["TRANSITIONS", "IllegalTransitionError", "check_transition"]

_S = OtaState
TRANSITIONS: dict[OtaState, frozenset[OtaState]] = {
    _S.IDLE: frozenset({_S.DOWNLOADING, _S.LOADING, _S.REJECTED, _S.FAILED}),
    _S.DOWNLOADING: frozenset({_S.VERIFYING, _S.FAILED}),
    _S.VERIFYING: frozenset({_S.BUILDING, _S.LOADING, _S.FAILED}),
    _S.BUILDING: frozenset({_S.LOADING, _S.FAILED}),
    _S.LOADING: frozenset({_S.VALIDATING, _S.FAILED}),
    _S.VALIDATING: frozenset({_S.ACTIVE, _S.FAILED}),
    _S.ACTIVE: frozenset({_S.COMMITTED, _S.ROLLED_BACK, _S.FAILED}),  # failed: rollback impossible
    _S.COMMITTED: frozenset(),
    _S.FAILED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.REJECTED: frozenset(),
}


def check_transition(old: OtaState, new: OtaState) -> OtaState:
    """Return `new` if `old -> new` is legal, else raise IllegalTransitionError."""
    return transitions.check_transition(TRANSITIONS, "OTA", old, new)
