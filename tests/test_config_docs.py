"""docs/config.md is generated from the config models and cannot drift."""

from __future__ import annotations

from agent import config_docs
from agent.config import AgentConfig
from agent.docgen import undescribed_fields


def test_committed_config_doc_matches_the_models() -> None:
    """docs/config.md equals what the generator renders now (run `python -m agent.config_docs`)."""
    assert config_docs.DOC_PATH.read_text() == config_docs.render()


def test_every_config_field_has_a_description() -> None:
    """Each field of every config section is described (discriminator `type` fields aside)."""
    assert undescribed_fields([AgentConfig], ignore={"type"}) == []
