"""A builder process that follows its parent like the real one, then builds 'forever'.

Writes its pid to the file named by its second argument (the PLAN slot), so a test can
watch it end when its parent is killed.
"""

import os
import sys
import time
from pathlib import Path

from agent.engines.trt_builder import end_with_parent

if __name__ == "__main__":
    end_with_parent()
    Path(sys.argv[2] + ".pid").write_text(str(os.getpid()))
    time.sleep(120)
