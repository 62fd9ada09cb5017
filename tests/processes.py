"""Real subprocesses for fault tests: start featx, kill it with SIGKILL when its own progress output
shows it has reached a point (never on a timer)."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

STALL_SECONDS = 300  # only a guard against a hung child; the kill itself waits for the marker


def kill_at_progress(command, marker: str, reached, env) -> str:
    """Run ``command``; SIGKILL it once ``reached(values)`` holds for the numbers ``marker`` captures.

    Parameters
    ----------
    command : list of str
    marker : str
        A regular expression with one group capturing a number in the child's stderr (its progress bar).
    reached : callable
        Takes the list of numbers seen so far, returns True when it is time to kill.
    env : dict

    Returns
    -------
    str
        Everything the child wrote on stderr.
    """
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    seen = []

    def pump():
        for chunk in iter(lambda: process.stderr.read1(256), b""):
            seen.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < STALL_SECONDS:
        values = [int(n) for n in re.findall(marker, "".join(seen))]
        if values and reached(values):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    reader.join(timeout=5)
    assert process.returncode == -signal.SIGKILL, (
        "the run ended before it reached the point to kill it at:\n" + "".join(seen)[-2000:]
    )
    return "".join(seen)
