"""Shared helpers with one home each: files, backoff, validation errors, strict models, state
transitions. Standard library and pydantic only; nothing here imports another `agent` package."""
