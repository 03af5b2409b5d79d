"""A builder process that dies the way TensorRT's builder can (killed by a signal).

Stands in for `agent.engines.trt_builder` where no GPU exists: a real process, really
killed, so the parent's handling of a crashed builder is exercised for real.
"""

import os
import signal

if __name__ == "__main__":
    os.kill(os.getpid(), signal.SIGKILL)
