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
    killed = threading.Event()

    def pump():
        # the kill happens here, as soon as the marker is read, so the child gets no further
        for chunk in iter(lambda: process.stderr.read1(256), b""):
            seen.append(chunk.decode(errors="replace"))
            values = [int(n) for n in re.findall(marker, "".join(seen))]
            if not killed.is_set() and values and reached(values):
                process.send_signal(signal.SIGKILL)
                killed.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    started = time.monotonic()
    while process.poll() is None and not killed.is_set() and time.monotonic() - started < STALL_SECONDS:
        time.sleep(0.02)
    stalled = process.poll() is None and not killed.is_set()
    if stalled:
        process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join(timeout=5)
    assert not stalled, f"no progress to the kill point in {STALL_SECONDS} s:\n" + "".join(seen)[-2000:]
    assert process.returncode == -signal.SIGKILL, (
        "the run ended before it reached the point to kill it at:\n" + "".join(seen)[-2000:]
    )
    return "".join(seen)
