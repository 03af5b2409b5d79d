"""Shared helpers with one home each: files, backoff, validation errors, strict models, state
transitions, YOLO label lines, errors with a reason, short durations, a resting worker thread.
Standard library and pydantic only; nothing here imports another `agent` package."""
