"""``cli.py`` with faults injected into chosen evaluations: the reliability tests run this.

Everything is the real command line (real storage, real models, real workers); only the
evaluations named in the ``GHOSTNAS_FAULTS`` environment variable misbehave, so that a test can
choose when a trial raises, scores NaN, runs out of memory or hangs long enough to be killed.

``GHOSTNAS_FAULTS`` is a comma-separated list of ``[PROCESS:]CALL=FAULT``: ``CALL`` counts the
evaluations of one process from 0 (each worker process counts its own), ``PROCESS`` limits the
fault to the process of that multiprocessing name (``MainProcess``, ``worker-0``, ...), and
``FAULT`` is one of

* ``raise``: a RuntimeError from the evaluation (a bug, a shape the kernels reject),
* ``nan``: the evaluation completes but every score is NaN,
* ``oom``: ``torch.OutOfMemoryError``, as a CUDA allocation failure raises it,
* ``hang``: an evaluation that never ends by itself (a long training run): it writes its pid
  to ``$GHOSTNAS_FAULT_DIR/hang-<pid>`` so that a test knows whom to kill, and when, then
  sleeps, calling the evaluation's ``check_stop`` as a training step would, until the process
  is killed or stopped,
* ``hang-once``: ``hang`` in the first process to get there only (the others go on), so that
  with ``--workers`` one worker hangs whichever of them starts first,
* ``sleep:S``: sleeps S seconds, then evaluates normally.
* ``barrier:N``: waits (up to 5 minutes) until N processes have reached a ``barrier`` fault,
  then evaluates normally: with ``0=barrier:2`` two workers each run at least one trial,
  however unevenly the machine starts them.

``GHOSTNAS_CONFIRM_FAULTS`` takes the same list for the training runs of ``confirm``
(``ProxyContext.train``; ``CALL`` counts its runs from 0; ``hang`` and ``sleep:S`` apply there).

``GHOSTNAS_TRAIN_PAUSE=N`` pauses ``train`` right after the checkpoint of epoch N is written: it
writes ``$GHOSTNAS_FAULT_DIR/paused-N`` and sleeps until the process is signalled, so that a
test interrupts or kills a run at a known epoch however fast the machine trains.

The faults are installed at import, so ``--workers`` children (spawned: they import this file
again as ``__mp_main__``) get them too.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _parse(spec: str) -> dict[int, str]:
    import multiprocessing

    me, faults = multiprocessing.current_process().name, {}
    for item in spec.split(","):
        where, _, fault = item.partition("=")
        process, _, call = where.rpartition(":")
        if process in ("", me):
            faults[int(call)] = fault
    return faults


def _hang(check_stop) -> None:
    """Never return by itself: leave the pid for the test, then step as training does."""
    marker = Path(os.environ.get("GHOSTNAS_FAULT_DIR", ".")) / f"hang-{os.getpid()}"
    marker.write_text(str(os.getpid()))
    while True:
        (check_stop or (lambda: None))()
        time.sleep(0.1)


def _install(spec: str) -> None:
    import torch

    from evaluators.evaluate import Evaluator

    faults = _parse(spec)
    original = Evaluator.evaluate
    calls = [0]

    def evaluate(self, config, **kwargs):
        call = calls[0]
        calls[0] += 1
        fault = faults.get(call, "")
        if fault == "raise":
            raise RuntimeError(f"injected fault in evaluation {call}")
        if fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        folder = Path(os.environ.get("GHOSTNAS_FAULT_DIR", "."))
        if fault == "hang-once":
            try:
                os.close(os.open(folder / "hang-once", os.O_CREAT | os.O_EXCL))
                fault = "hang"
            except FileExistsError:
                fault = ""
        if fault == "hang":
            _hang(kwargs.get("check_stop"))
        if fault.startswith("sleep:"):
            time.sleep(float(fault.removeprefix("sleep:")))
        if fault.startswith("barrier:"):
            (folder / f"barrier-{os.getpid()}").touch()
            deadline = time.monotonic() + 300
            while len(list(folder.glob("barrier-*"))) < int(fault.removeprefix("barrier:")) and time.monotonic() < deadline:
                (kwargs.get("check_stop") or (lambda: None))()
                time.sleep(0.05)
        evaluation = original(self, config, **kwargs)
        if fault == "nan":
            return dataclasses.replace(evaluation, scores={k: float("nan") for k in evaluation.scores})
        return evaluation

    Evaluator.evaluate = evaluate


def _install_confirm(spec: str) -> None:
    from search._proxy import ProxyContext

    faults = _parse(spec)
    original = ProxyContext.train
    calls = [0]

    def train(self, config, **kwargs):
        fault = faults.get(calls[0], "")
        calls[0] += 1
        if fault == "hang":
            _hang(kwargs.get("check_stop"))
        if fault.startswith("sleep:"):
            time.sleep(float(fault.removeprefix("sleep:")))
        return original(self, config, **kwargs)

    ProxyContext.train = train


def _install_train_pause(epoch: int) -> None:
    from evaluators.trainer import _Session

    original = _Session._save

    def save(self, request, done):
        original(self, request, done)
        if done == epoch:
            (Path(os.environ.get("GHOSTNAS_FAULT_DIR", ".")) / f"paused-{done}").touch()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # Ctrl-C raises KeyboardInterrupt here, as mid-epoch
                time.sleep(0.05)

    _Session._save = save


if os.environ.get("GHOSTNAS_FAULTS"):
    _install(os.environ["GHOSTNAS_FAULTS"])
if os.environ.get("GHOSTNAS_CONFIRM_FAULTS"):
    _install_confirm(os.environ["GHOSTNAS_CONFIRM_FAULTS"])
if os.environ.get("GHOSTNAS_TRAIN_PAUSE"):
    _install_train_pause(int(os.environ["GHOSTNAS_TRAIN_PAUSE"]))

if __name__ == "__main__":
    import cli

    sys.exit(cli.main())
