"""The server that trial processes are forked from: a process that has imported torch and the
trainer once, so that each trial starts in a fraction of a second. It imports nothing heavy
itself, so the sweep can start the server first and let its imports overlap the sweep's own."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext

# Everything a trial imports on its way to its first step, so that no trial pays for it: the
# trainer, the trial's own process body (minigpt.local_executor), the checkpoint writer, and
# torch._dynamo (with sympy, about a second on a 2-core CPU), which torch.optim's constructors
# import on first use. The command line too, as `python -m minigpt.cli` (or the console script)
# is the main module that every child re-runs under multiprocessing. tests/test_trial_server.py
# checks that a trial imports nothing heavy beyond this list.
PRELOAD = [
    "minigpt.train",
    "minigpt.trial",
    "minigpt.local_executor",
    "minigpt.checkpoint",
    "minigpt.cli",
    "torch._dynamo",
]


def trial_context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def start_trial_server() -> None:
    """Start the server now, without waiting for its imports."""
    if trial_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _forget_inherited_server() -> None:
    """A process forked from one whose server is running (a test runner forking per test, a user's
    own worker) cannot reach that server, which is not its child: multiprocessing would fail on
    it. Forget it, so that this process starts its own when it needs one."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the module's one server, which offers no reset of its own
    server._forkserver_pid = server._forkserver_address = None


os.register_at_fork(after_in_child=_forget_inherited_server)


def wait_for_trial_server() -> None:
    """Return once the server has finished its imports (starting it if need be), so that they
    do not compete with a measurement the sweep takes next."""
    process = trial_context().Process(target=int)
    process.start()
    process.join()
