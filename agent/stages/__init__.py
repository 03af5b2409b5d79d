"""The stages of the inference loop, each one job, threads kept out of them.

`agent.pipeline` runs them on three threads: prepare -> [Slot] -> inference -> [Slot] -> post.

- `slot`: a bounded one-slot hand-off between two threads (sleeps on a Condition).
- `batching`: which frames go into one engine call (newest frame of up to N cameras).
- `prepare`: letterbox a batch into one of two reused input buffers.
- `post`: decode a batch and turn each frame's result into a message, in frame order.
- `config`: the `batch` section of the agent's configuration.
"""
