"""Real subprocesses for fault tests: start featx, act when its own output shows it has reached a point
(kill it, stop it, start a rival), never on a timer."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

STALL_SECONDS = 300  # only a guard against a hung child; every action waits for the child's own output


class Child:
    """A subprocess whose stderr is read as it comes, so that a test can wait on what it has written.

    Parameters
    ----------
    command : list of str
    env : dict
    on_output : callable, optional
        Called with this Child after each piece of stderr read, in the reading thread (so that an
        action such as a kill happens as soon as a marker appears).
    new_session : bool
        Start the child in a session and process group of its own (to signal the whole group, as a
        terminal's Ctrl-C does, without signalling the tests).
    """

    def __init__(self, command, env, on_output=None, new_session=False):
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=new_session
        )
        self._seen = []
        self._changed = threading.Condition()
        self._on_output = on_output
        self._stdout = []
        self._readers = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=lambda: self._stdout.append(self.process.stdout.read()), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self):
        for piece in iter(lambda: self.process.stderr.read1(256), b""):
            with self._changed:
                self._seen.append(piece.decode(errors="replace"))
                self._changed.notify_all()
            if self._on_output is not None:
                self._on_output(self)
        with self._changed:
            self._seen.append("")  # end of output
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        """Everything read from the child's stderr so far."""
        return "".join(self._seen)

    def wait_for(self, pattern: str) -> re.Match:
        """Block until the child's stderr matches ``pattern``; fail if it ends (or stalls) first."""
        with self._changed:
            ended = self._changed.wait_for(
                lambda: re.search(pattern, self.stderr) or (self._seen and self._seen[-1] == ""), STALL_SECONDS
            )
        found = re.search(pattern, self.stderr)
        assert found, f"the child never wrote {pattern!r} ({'ended' if ended else 'stalled'}):\n{self.stderr[-2000:]}"
        return found

    def finish(self) -> int:
        """Wait for the child to exit (killing it after the stall guard); its exit status."""
        try:
            self.process.wait(timeout=STALL_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the child hung for {STALL_SECONDS} s:\n{self.stderr[-2000:]}") from None
        for reader in self._readers:
            reader.join(timeout=STALL_SECONDS)  # end of output: every process holding the pipe is gone
        return self.process.returncode

    @property
    def stdout(self) -> str:
        """The child's stdout, once it has finished."""
        return b"".join(self._stdout).decode(errors="replace")


@dataclass(frozen=True)
class Signalled:
    """A child sent a signal at a point of its progress.

    Attributes
    ----------
    returncode : int
    stderr : str
    descendants : list of (int, int)
        (pid, pidfd) of every process below the child when the signal was sent.
    """

    returncode: int
    stderr: str
    descendants: list

    def survivors(self, guard: float = 60.0) -> list[int]:
        """Pids of the descendants still running once each has had ``guard`` seconds to exit."""
        alive = []
        for pid, pidfd in self.descendants:
            try:
                readable, _, _ = select.select([pidfd], [], [], guard)
                if not readable:
                    alive.append(pid)
            finally:
                os.close(pidfd)
        return alive


def descendants(pid: int) -> list[int]:
    """Pids of every living process below ``pid``, from ``/proc/PID/task/*/children``."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the task ended meanwhile
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def kill_at_progress(
    command, marker: str, reached, env, signal_number: int = signal.SIGKILL, whole_group: bool = False
) -> Signalled:
    """Run ``command``; send it ``signal_number`` once ``reached(values)`` holds for the numbers ``marker`` captures.

    Parameters
    ----------
    command : list of str
    marker : str
        A regular expression with one group capturing a number in the child's stderr (its progress bar).
    reached : callable
        Takes the list of numbers seen so far, returns True when it is time to send the signal.
    env : dict
    signal_number : int
        SIGKILL by default (the child must die of it); SIGTERM or SIGINT let it unwind.
    whole_group : bool
        Signal the child's whole process group (its own: it starts a new session), workers included.

    Returns
    -------
    Signalled
    """
    sent = []

    def watch(child):
        # the signal goes here, as soon as the marker is read, so the child gets no further
        values = [int(n) for n in re.findall(marker, child.stderr)]
        if not sent and values and reached(values):
            below = []
            for pid in descendants(child.process.pid):
                try:
                    below.append((pid, os.pidfd_open(pid)))
                except ProcessLookupError:
                    continue
            sent.append(below)
            if whole_group:
                os.killpg(child.process.pid, signal_number)
            else:
                child.process.send_signal(signal_number)

    child = Child(command, env, on_output=watch, new_session=whole_group)
    returncode = child.finish()
    assert sent, "the run ended before it reached the point to signal it at:\n" + child.stderr[-2000:]
    if signal_number == signal.SIGKILL:
        assert returncode == -signal.SIGKILL, "the run ended before the kill reached it:\n" + child.stderr[-2000:]
    return Signalled(returncode, child.stderr, sent[0])
