"""docs/mqtt.md is generated from the payload models and cannot drift."""

from __future__ import annotations

from agent.docgen import nested_models
from agent.messages import docs


def test_committed_mqtt_doc_matches_the_models() -> None:
    """docs/mqtt.md equals what the generator renders now (run `python -m agent.messages.docs`)."""
    assert docs.DOC_PATH.read_text() == docs.render()


def test_every_payload_field_has_a_description() -> None:
    """Each field of each topic's payload (and nested models) is described for operators."""
    missing = []
    seen: set[type] = set()
    stack = [d.model for d in docs.topic_docs() if d.model is not None]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                missing.append(f"{model.__name__}.{name}")
            stack += nested_models(field.annotation)
    assert missing == []


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
