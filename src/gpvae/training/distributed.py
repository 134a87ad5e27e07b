"""Distributed training under ``torchrun``: the process group, collectives and DDP.

``torchrun --nproc-per-node N [--nnodes K --rdzv-endpoint HOST:PORT] script_or_-m ...``
starts N processes per node and tells each its ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
rendezvous address in the environment. :func:`current` reads them and initialises the
default process group once (gloo on CPU, NCCL on GPU; a group the user's script initialised
is used as it is); outside torchrun (or with one process) it returns None and nothing
changes. Everything else here is a method of :class:`Communicator`:

- collectives on numbers and Python objects (:meth:`~Communicator.all_reduce`,
  :meth:`~Communicator.all_gather`, :meth:`~Communicator.broadcast`), whose failures (a peer
  that died, was killed, or timed out) become a :class:`~gpvae.errors.DistributedError`;
- :meth:`~Communicator.check` / :meth:`~Communicator.together`: every process says whether
  its part of some work failed, and if one did, every process raises the same error naming
  that process (so that process 0 can report it, and none is left waiting for the others);
- :meth:`~Communicator.wrap`: the model in ``DistributedDataParallel``, called through
  :class:`ElboForward` so that DDP's forward hooks see every ELBO evaluation and its
  backward pass all-reduces (averages) the gradients. Models have no buffers to keep in
  step; every process builds the same initial weights from the seed, and DDP copies
  process 0's at the start anyway.

How a fit uses them (the loss, the batches, the validation score, checkpoints) is in
:mod:`gpvae.training.loop` and :mod:`gpvae.training.session`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gpvae import errors, settings
from gpvae.batch import Batch
from gpvae.errors import DistributedError, GPVAEError
from gpvae.model import ELBOResult

__all__ = [
    "DIST_ERRORS",
    "Communicator",
    "ElboForward",
    "current",
    "is_main_process",
    "is_peer_failure",
    "launched",
    "peer_error",
]

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}
#: What torch.distributed raises when a collective fails (a peer died, a timeout, ...).
DIST_ERRORS: tuple[type[Exception], ...] = (getattr(dist, "DistError", RuntimeError),)
#: Parts of the messages of the plain RuntimeErrors that a collective run outside gpvae's own
#: calls (DDP's gradient all-reduce, inside ``backward``) raises when a peer is gone.
_PEER_LOST = (
    "gloo/transport",
    "Connection closed by peer",
    "Connection reset by peer",
    "NCCL communicator was aborted",
)


def is_peer_failure(err: BaseException) -> bool:
    """Whether ``err`` is a collective's failure: one of :data:`DIST_ERRORS`, or a plain
    RuntimeError with gloo's or NCCL's words for a lost peer (gloo's transport raises
    ``RuntimeError: [.../gloo/transport/tcp/pair.cc:537] Read error ...`` from DDP's
    backward when another process is killed). gpvae's own errors are not."""
    if isinstance(err, GPVAEError):
        return False
    if isinstance(err, DIST_ERRORS):
        return True
    return isinstance(err, RuntimeError) and any(part in str(err) for part in _PEER_LOST)


def launched() -> bool:
    """True in a process that torchrun (or another launcher setting ``WORLD_SIZE`` and
    ``RANK``) started as one of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def is_main_process() -> bool:
    """False only in processes 1, 2, ... of a distributed job (for output and files)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    if launched():
        return os.environ.get("RANK", "0") == "0"
    return True


#: Seconds for which :func:`_destroy` leaves the GIL to gloo's worker threads at exit.
_EXIT_GRACE = 0.1


def _destroy() -> None:
    """At exit, while the interpreter is whole: give gloo's worker threads a moment with the
    GIL, then destroy the process group.

    A gloo worker thread drops its own reference to a finished collective after the
    caller's ``wait`` has returned, and dropping one that holds Python tensors takes the
    GIL. If the process's last collective is followed at once by the end of the script,
    that release can come after the interpreter has begun to finalise; the thread is then
    torn down while unwinding the destructor: ``std::terminate`` and SIGABRT after a job
    that succeeded (1 two-process fit in 7 to 27 here under load; the core dump shows
    ``AsyncAllgatherWork``'s destructor in ``ProcessGroupGloo::runLoop`` and the main thread
    in ``Py_FinalizeEx``). Destroying the group does not stop those threads once a
    ``DistributedDataParallel`` wrapper was built (torch 2.13 keeps the group alive past
    ``destroy_process_group`` then, even after the wrapper and its module are gone), so
    instead this handler sleeps for :data:`_EXIT_GRACE` seconds, without the GIL, before
    the interpreter finalises. (A barrier here would not help: the releases are this
    process's own, and a barrier could wait on a peer that is still in another collective.)

    An exception raised meanwhile is dropped: the job is ending, and the command line's
    SIGTERM handler raises one when torchrun stops the processes after another one failed
    (the error is already reported; Python would print it again as a traceback, "Exception
    ignored in atexit callback").
    """
    if not dist.is_initialized():
        return
    with contextlib.suppress(Exception):
        time.sleep(_EXIT_GRACE)
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def current(device: torch.device | None = None) -> Communicator | None:
    """The communicator of this process, or None when it runs alone.

    Initialises the default process group from torchrun's environment on the first call
    (NCCL when ``device`` is a CUDA device, or when it is None and CUDA is available; gloo
    otherwise) and destroys it at exit; an already initialised group is used as it is.

    Args:
        device: the device the model will train on, if known.

    Raises:
        DistributedError: the process group could not be initialised (e.g. the rendezvous
            timed out).
    """
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if not launched():
            return None
        cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
        backend = "nccl" if cuda else "gloo"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        try:
            dist.init_process_group(
                backend=backend, timeout=timedelta(seconds=settings.DISTRIBUTED_TIMEOUT)
            )
        except (RuntimeError, ValueError) as err:
            raise DistributedError(
                f"torchrun: could not set up the process group ({backend}): {_one_line(err)}"
            ) from err
        atexit.register(_destroy)
    world = dist.get_world_size()
    if world == 1:
        return None
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return Communicator(rank=rank, world_size=world, local_rank=local, backend=dist.get_backend())


def _one_line(err: BaseException) -> str:
    return " ".join(part.strip() for part in str(err).splitlines() if part.strip())


class ElboForward(nn.Module):
    """``forward(batch, num_samples, iwae, generator) = model.elbo(...)``: the module that
    DDP wraps (DDP synchronises gradients of what its ``forward`` computes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        batch: Batch,
        num_samples: int = 1,
        iwae: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOResult:
        elbo: Any = self.model.elbo
        result: ELBOResult = elbo(batch, num_samples=num_samples, iwae=iwae, generator=generator)
        return result


@dataclass(frozen=True)
class Communicator:
    """This process's place in a distributed job, and the job's collectives.

    Attributes:
        rank: this process, 0..world_size-1 (process 0 reports and writes files).
        world_size: the number of processes.
        local_rank: this process on its node (its GPU under NCCL).
        backend: "gloo" or "nccl".
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """True in process 0."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where the tensors of collectives live (the process's GPU under NCCL)."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def describe(self) -> str:
        """``process r of W``."""
        return f"process {self.rank} of {self.world_size}"

    # ------------------------------------------------------------------ collectives

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except RuntimeError as err:  # DIST_ERRORS are RuntimeErrors
            if isinstance(err, GPVAEError):
                raise
            raise peer_error(err) from err

    def all_reduce(self, values: Sequence[float] | np.ndarray, op: str = "sum") -> np.ndarray:
        """Element-wise sum (or max, min) of float64 ``values`` over every process."""
        t = torch.as_tensor(np.asarray(values, dtype=np.float64).copy(), device=self.device)
        self._run(dist.all_reduce, t, op=getattr(dist.ReduceOp, _OPS[op]))
        out: np.ndarray = t.cpu().numpy()
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in process order."""
        out: list[Any] = [None] * self.world_size
        self._run(dist.all_gather_object, out, obj)
        return out

    def gather(self, obj: Any, dst: int = 0) -> list[Any]:
        """Every process's ``obj`` in process ``dst`` (in process order); ``[]`` elsewhere."""
        out: list[Any] | None = [None] * self.world_size if self.rank == dst else None
        self._run(dist.gather_object, obj, out, dst=dst)
        return out if out is not None else []

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Process ``src``'s ``obj`` (picklable), on every process."""
        box = [obj]
        self._run(dist.broadcast_object_list, box, src=src)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        self._run(dist.barrier)

    # ------------------------------------------------------------------ failures

    def check(self, error: BaseException | None, classes: Sequence[type] = ()) -> None:
        """Every process says whether its part failed; if any did, all raise its error.

        Each process calls this at the same point with its own exception (or None). When
        none failed it returns (one small all-reduce). Otherwise every process raises the
        error of the first process that failed, naming it: a
        :class:`~gpvae.errors.GPVAEError` (or an instance of ``classes``, rebuilt from its
        message) keeps its class, with ``(in process r of W)`` added to its message unless
        every process failed alike; any other error becomes a
        :class:`~gpvae.errors.DistributedError`. The raised error has
        ``synchronized = True``: every process raises it (process 0 reports it).

        Args:
            error: this process's exception, or None.
            classes: other exception classes to raise as themselves (constructed from one
                message argument), e.g. the command line's errors.
        """
        if self.all_reduce([0.0 if error is None else 1.0])[0] == 0:
            return
        report = None if error is None else (type(error).__name__, _one_line(error))
        reports = self.all_gather(report)
        rank = next(r for r, rep in enumerate(reports) if rep is not None)
        name, message = reports[rank]
        known = {c.__name__: c for c in classes}
        cls = known.get(name) or getattr(errors, name, None)
        same = all(rep == reports[rank] for rep in reports)
        where = "" if same else f" (in process {rank} of {self.world_size})"
        if isinstance(cls, type) and (issubclass(cls, GPVAEError) or name in known):
            raised: BaseException = cls(f"{message}{where}")
        else:
            raised = DistributedError(f"{name}: {message}{where}")
        raised.synchronized = True  # type: ignore[attr-defined]
        raise raised from error

    @contextlib.contextmanager
    def together(self, classes: Sequence[type] = ()) -> Iterator[None]:
        """Run the block on every process; if it fails on any, raise on all (see
        :meth:`check`). Every process must enter the block."""
        error: Exception | None = None
        try:
            yield
        except Exception as err:  # reported to every process by check
            if getattr(err, "synchronized", False):  # raised alike by every process
                raise
            error = err
        self.check(error, classes)

    # ------------------------------------------------------------------ DDP

    def wrap(self, model: nn.Module, probe: Batch) -> nn.Module:
        """``DistributedDataParallel(ElboForward(model))``: call it like ``model.elbo``.

        One forward and backward pass on ``probe`` (with a generator of its own; gradients
        cleared afterwards) finds whether some trainable parameter gets no gradient; only
        then does DDP look for unused parameters at every step (a graph traversal, and a
        warning when there are none).
        """
        from torch.nn.parallel import DistributedDataParallel

        unused = 0.0
        with self.together():
            unused = float(_has_unused_parameters(model, probe))
        find_unused = bool(self.all_reduce([unused], op="max")[0])
        ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(
            ElboForward(model), device_ids=ids, find_unused_parameters=find_unused
        )


def _has_unused_parameters(model: nn.Module, batch: Batch) -> bool:
    """Whether a trainable parameter of ``model`` gets no gradient from the ELBO of ``batch``."""
    generator = torch.Generator(device=batch.y.device).manual_seed(0)
    elbo: Any = model.elbo
    try:
        (-elbo(batch, generator=generator).bound.sum()).backward()
        return any(p.grad is None for p in model.parameters() if p.requires_grad)
    finally:
        model.zero_grad(set_to_none=True)


def peer_error(err: BaseException) -> DistributedError:
    """The error of a collective that failed because another process is gone."""
    reason = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", _one_line(err))
    reason = reason.split(" This is typically")[0][:300]
    out = DistributedError(
        f"another process of the job stopped, was killed or cannot be reached ({reason})"
    )
    out.synchronized = True  # type: ignore[attr-defined]
    return out
