"""Stopping a training run cleanly on SIGINT / SIGTERM (shared by the HYPIR and RSD trainers).

While :func:`stop_on_signals` is active, the first SIGINT or SIGTERM is only recorded: the loop
finishes the step it is in, writes a checkpoint and raises :class:`Interrupted`, which the command
line turns into one line and exit status 128 + signal (130 / 143). A second SIGINT stops at once
(``KeyboardInterrupt``), for a user who does not want to wait for the step.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path


class Interrupted(Exception):
    """A run stopped on a signal after ``step`` with its checkpoint at ``checkpoint``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = f"checkpoint {checkpoint}" if checkpoint is not None else "checkpoint written by the main process"
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; {where} "
                         "(continue with --resume auto)")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The first stop signal received (``signum``, 0 while none)."""

    def __init__(self):
        self.signum = 0

    def requested(self, acc=None) -> int:
        """The signal to stop on, agreed by every process of ``acc`` (an ``accelerate.Accelerator``):
        one process's signal stops them all after the same step, so their checkpoints agree."""
        if acc is None or acc.num_processes == 1:
            return self.signum
        import torch

        flag = torch.tensor([self.signum], device=acc.device)
        return int(acc.reduce(flag, reduction="max").item())


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Record SIGINT/SIGTERM instead of dying (see the module doc); the previous handlers come back
    on exit. Outside the main thread (signals cannot be caught there) it records nothing."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def record(signum, frame):
        if stop.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        stop.signum = stop.signum or signum

    previous = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
