import atexit
import os
import sys
import threading

from .cli import main


def _exit(code: int) -> None:
    """End the process without the interpreter's teardown, after everything a normal exit does before it: the other
    threads finished, the exit handlers run (the catalogue written, caches completed), the output flushed. Tearing
    down the modules and native libraries (torch, numba, Chroma) of an analysis costs about a second, for nothing:
    everything that must last is already on disk, written atomically. Under a profiler or a debugger (which report
    after the run returns) the process ends as usual."""
    if sys.getprofile() or sys.gettrace():
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):  # the reader went away (`| head`): as Python's own exit, say nothing
        code = code or 1
    os._exit(code)


_exit(main() or 0)
