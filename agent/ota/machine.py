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
from agent.util.transitions import IllegalTransitionError, transition_table

__all__ = ["TRANSITIONS", "IllegalTransitionError", "check_transition"]

_S = OtaState
TRANSITIONS: dict[OtaState, frozenset[OtaState]] = transition_table(
    {
        _S.IDLE: {_S.DOWNLOADING, _S.LOADING, _S.REJECTED, _S.FAILED},
        _S.DOWNLOADING: {_S.VERIFYING, _S.FAILED},
        _S.VERIFYING: {_S.BUILDING, _S.LOADING, _S.FAILED},
        _S.BUILDING: {_S.LOADING, _S.FAILED},
        _S.LOADING: {_S.VALIDATING, _S.FAILED},
        _S.VALIDATING: {_S.ACTIVE, _S.FAILED},
        _S.ACTIVE: {_S.COMMITTED, _S.ROLLED_BACK, _S.FAILED},  # failed: rollback impossible
        _S.COMMITTED: set(),
        _S.FAILED: set(),
        _S.ROLLED_BACK: set(),
        _S.REJECTED: set(),
    }
)


def check_transition(old: OtaState, new: OtaState) -> OtaState:
    """Return `new` if `old -> new` is legal, else raise IllegalTransitionError."""
    return transitions.check_transition(TRANSITIONS, "OTA", old, new)
