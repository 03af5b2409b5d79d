"""docs/mqtt.md is generated from the payload models and cannot drift."""

from __future__ import annotations

from agent.docgen import undescribed_fields
from agent.messages import docs


def test_committed_mqtt_doc_matches_the_models() -> None:
    """docs/mqtt.md equals what the generator renders now (run `python -m agent.messages.docs`)."""
    assert docs.DOC_PATH.read_text() == docs.render()


def test_every_payload_field_has_a_description() -> None:
    """Each field of each topic's payload (and nested models) is described for operators."""
    models = [d.model for d in docs.topic_docs() if d.model is not None]
    assert undescribed_fields(models) == []


def test_every_topic_of_the_topics_module_is_documented() -> None:
    """Each topic that Topics builds appears in the generated doc."""
    text = docs.render()
    for topic in (
        "status",
        "health",
        "ota/command",
        "ota/state",
        "ack",
        "cameras/<camera>/detections",
    ):
        assert f"`edge/<device>/{topic}`" in text
