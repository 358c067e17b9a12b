"""Teardown is signal-safe: a second Ctrl-C or a SIGTERM while a run tears down is noted, not obeyed."""

from __future__ import annotations

import os
import signal

from harness.run import teardown_signals


def test_signals_during_teardown_do_not_interrupt_it() -> None:
    before = signal.getsignal(signal.SIGTERM)
    done = []
    with teardown_signals() as seen:
        os.kill(os.getpid(), signal.SIGTERM)  # default action: the process dies here
        os.kill(os.getpid(), signal.SIGINT)  # default handler: KeyboardInterrupt here
        done.append("teardown finished")
    assert done == ["teardown finished"]
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is before
