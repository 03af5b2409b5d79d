"""The low-water mark: stamping `oldest_unacked_seq` into stored bytes, and a cache of it that
never declares more than the store really holds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.contracts.payloads import DetectionMessage
from agent.publish.lowwater import LowWater, stamp_oldest_unacked
from agent.publish.memory import MemoryStore
from agent.publish.store import OutboxMessage
from tests.helpers.messages import detection_payload


@pytest.mark.parametrize(
    ("payload", "oldest", "expected"),
    [
        # a detection message as the pipeline dumps it: null, last field, replaced in place
        (b'{"seq":7,"oldest_unacked_seq":null}', 3, b'{"seq":7,"oldest_unacked_seq":3}'),
        # a replay: the value stamped last time is replaced by the fresh one
        (b'{"seq":7,"oldest_unacked_seq":3}', 5, b'{"seq":7,"oldest_unacked_seq":5}'),
        # the field not last (another producer's field order): re-serialised, order kept
        (b'{"oldest_unacked_seq": null, "seq": 7}', 2, b'{"oldest_unacked_seq":2,"seq":7}'),
        # a payload without the field is not ours to change
        (b'{"seq":7}', 2, b'{"seq":7}'),
        # the key text inside a string value is not the field
        (
            b'{"text":"\\",\\"oldest_unacked_seq\\":1}"}',
            2,
            b'{"text":"\\",\\"oldest_unacked_seq\\":1}"}',
        ),
    ],
)
def test_stamp_sets_only_the_field(payload: bytes, oldest: int, expected: bytes) -> None:
    """stamp_oldest_unacked changes exactly the oldest_unacked_seq value of a payload."""
    assert stamp_oldest_unacked(payload, oldest) == expected


def test_stamped_detection_message_still_validates() -> None:
    """A real detection payload stamped with a mark validates and carries it."""
    raw = stamp_oldest_unacked(detection_payload(12, boot_id="b1b1b1b1"), 9)
    msg = DetectionMessage.model_validate_json(raw)
    assert msg.oldest_unacked_seq == 9
    assert json.loads(raw)["seq"] == 12


def _msg(seq: int, stream: str = "detections") -> OutboxMessage:
    return OutboxMessage("t", "cam1", "b1b1b1b1", seq, 1, b"{}", stream)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "delete", "refresh"]), st.integers(0, 7))))
def test_mark_is_never_above_the_lowest_seq_held(ops: list[tuple[str, int]]) -> None:
    """Whatever appends, deletes and refreshes happen, the mark of every held row is <= the
    lowest seq its stream holds (it may lag below it, never run ahead)."""
    store, low, nxt = MemoryStore(10_000), LowWater(), {"detections": 0, "florence2": 0}
    for op, n in ops:
        if op == "append":
            stream = "florence2" if n % 2 else "detections"
            store.append([_msg(nxt[stream] + i, stream) for i in range(n)])
            nxt[stream] += n
            low.appended(store.take_appended())
        elif op == "delete":
            rows = store.next_batch(0, 10_000)
            store.delete(r.id for r in rows[n::3])
            low.deleted()
        else:
            low.refresh(store.lowest_seqs())
        truth = store.lowest_seqs()
        for row in store.next_batch(0, 10_000):
            assert low.mark_for(row) <= truth[row.key] <= row.seq


def test_refresh_makes_the_mark_exact() -> None:
    """After rows are deleted and the store re-read, the mark is the lowest seq held."""
    store, low = MemoryStore(100), LowWater()
    store.append([_msg(i) for i in range(10)])
    low.appended(store.take_appended())
    rows = store.next_batch(0, 100)
    store.delete(r.id for r in rows[:4])
    low.deleted()
    assert low.stale and low.mark_for(rows[9]) == 0
    low.refresh(store.lowest_seqs())
    assert not low.stale and low.mark_for(rows[9]) == 4
