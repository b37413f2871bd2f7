"""A riskmon command run as a user runs it in a terminal: its output read line by line while it
runs, so a test can wait for what it prints."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Self


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


@dataclass
class Printing:
    """A running command and what it printed so far (stdout and stderr, line by line)."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, cmd: list[str], env: dict[str, str] | None = None) -> Self:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        out = cls(proc)
        stdout = proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:  # text mode: a "\r" progress line counts as a line too
                out.lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        return out

    def read_until(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line from here on matching ``pattern``; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"{pattern!r} not printed; output so far: {self.seen[-40:]}")
