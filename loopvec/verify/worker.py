"""The worker process: `python -m loopvec.verify.worker`, one of `sandbox.Pool`'s.

It answers requests on a private copy of its stdin/stdout, length-prefixed pickles:
("check", Candidate, VerifySettings) -> ("verdict", Verdict). Before importing user
code it moves fd 0 to /dev/null and fd 1 onto stderr, so nothing a user function prints
or reads can corrupt the protocol. torch and hypothesis are imported once, at start-up,
and stay warm for the whole batch.

User code is not: before the first request the worker notes the module graph
(`loading.ModuleGraph`) and the attributes of torch's namespaces (`oracle.Attributes`),
and after each candidate drops the modules it loaded and undoes what it patched
(`torch.isclose = ...`), so each candidate is proved with its own file's modules and
with torch as torch defines it. The oracle is imported (with `check`) before any user
code: the references it judges with are taken then.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import struct
import sys
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")


def send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    """The next message, or None at end of input."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    data = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _private_pipes() -> tuple[BinaryIO, BinaryIO]:
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return requests, replies


def main() -> int:
    requests, replies = _private_pipes()
    from .confine import confine

    sandboxed = confine()  # before torch starts threads, and before any user code
    faulthandler.enable()  # a segfault leaves its traceback in the stderr log
    import torch

    # One thread per worker: several workers share the machine, and a fixed thread
    # count keeps reductions' summation order the same from run to run.
    torch.set_num_threads(1)
    from .check import check  # imports hypothesis, the oracle and the rest
    from .loading import ModuleGraph
    from .oracle import Attributes, torch_namespaces
    from .types import Verdict

    graph, patched = ModuleGraph.take(), Attributes(torch_namespaces())  # before any user code

    send(replies, ("ready", os.getpid(), sandboxed))
    home = os.getcwd()
    while True:
        message = receive(requests)
        if message is None:
            return 0
        _, cand, settings = message
        try:
            verdict = check(cand, settings)
        except Exception as e:  # a bug of the verifier's own: say so, do not blame the rewrite
            verdict = Verdict("unverifiable", f"verifier error: {type(e).__name__}: {e}", key=cand.key)
        _reset_global_state(torch, home)
        graph.restore()
        patched.restore()
        send(replies, ("verdict", verdict))


def _reset_global_state(torch: Any, home: str) -> None:
    """Undo process-wide switches user code may have flipped, before the next candidate."""
    os.chdir(home)
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    sys.stdout = sys.__stdout__
    sys.stderr = sys.__stderr__


if __name__ == "__main__":
    sys.exit(main())
