"""The trial server preloads what a trial imports, so that no trial pays for an import: a trial
trained in a fresh interpreter that imported only the server's PRELOAD imports nothing of torch
(torch._dynamo, which torch.optim's constructors pull in, took about a second per trial) or sympy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from minigpt import trial_server

from .conftest import SHAKESPEARE, subprocess_env

TRIAL_AFTER_PRELOAD = """
import json, sys, tempfile
from pathlib import Path
from minigpt.trial_server import PRELOAD

for name in PRELOAD:
    __import__(name)
before = set(sys.modules)
from minigpt.config import Config
from minigpt.data import load_corpus
from minigpt.local_executor import begin_and_train
from minigpt.store import RunStore
from minigpt.train import Budget
from minigpt.trial import TrialJob, TrialSettings, TrialSpec

corpus = load_corpus(sys.argv[1], None)
config = Config(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, warmup_steps=1, eval_interval=1,
                eval_batches=1, vocab_size=corpus.tokenizer.vocab_size)
spec = TrialSpec("baseline", "the reference", "cpu", 0, config, {})
settings = TrialSettings(sys.argv[1], Budget(max_steps=2), None)


class Points:
    def send(self, message):
        pass


with tempfile.TemporaryDirectory() as out:
    record = begin_and_train(TrialJob(spec, settings, corpus), RunStore(out), Points())
print(json.dumps({"status": record["status"], "imported": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.slow
def test_the_trial_server_preloads_the_torch_a_trial_imports() -> None:
    command = [sys.executable, "-c", TRIAL_AFTER_PRELOAD, str(SHAKESPEARE)]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["status"] == "completed"
    heavy = [name for name in found["imported"] if name.split(".")[0] in ("torch", "sympy", "safetensors", "typer")]
    # torch.profiler's modules are touched lazily, each imported in well under a millisecond
    heavy = [name for name in heavy if not name.startswith("torch.profiler")]
    assert heavy == [], f"add to minigpt/trial_server.py PRELOAD what a trial imports: {heavy[:12]}"


@pytest.mark.skipif(
    "forkserver" not in __import__("multiprocessing").get_all_start_methods(), reason="no forkserver here"
)
def test_the_server_is_a_forkserver_with_that_preload() -> None:
    context = trial_server.trial_context()
    assert context.get_start_method() == "forkserver"
    assert "torch._dynamo" in trial_server.PRELOAD and "minigpt.trial" in trial_server.PRELOAD


FORKED_AFTER_THE_SERVER = """
import os
from minigpt.trial_server import start_trial_server, wait_for_trial_server

start_trial_server()
child = os.fork()
if child == 0:
    try:
        start_trial_server()  # the parent's server is not this process's child
        wait_for_trial_server()
    except BaseException as error:
        print(type(error).__name__, error)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(child, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork here")
def test_a_process_forked_after_the_server_started_starts_a_server_of_its_own() -> None:
    """A test runner that forks per test (mutation testing does) or a user's forked worker: without
    forgetting the inherited server, multiprocessing fails with ChildProcessError."""
    command = [sys.executable, "-c", FORKED_AFTER_THE_SERVER]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
