"""Data-parallel training on several processes (GPUs, machines): the helpers :func:`nrsfm_kit.train.fit` and the
step functions use.

The scheme is PyTorch DistributedDataParallel's maths without the wrapper: every process (a *rank*) holds the
whole model, draws the same GLOBAL mini-batch (every rank is seeded alike and its sampler generators hold the same
state), computes its step function on its own contiguous part of it (:func:`shard`), and the loop averages the
gradients over the ranks (:func:`all_reduce_gradients`) before clipping and the optimiser step, so every rank takes
the same step. With a loss that is a mean over the batch's items and equal shards, the averaged gradient is the
gradient of the whole batch (up to float round-off), so the run follows the single-process run.

Launch with ``torchrun`` (one process per GPU, or several on CPU)::

    torchrun --nproc_per_node 2 -m nrsfm_kit.cli nrsfm fit --method dnrsfm --data synthetic:lowrank --epochs 50

and call :func:`init_from_env` once at start-up (``nrsfm-kit nrsfm fit`` does): it reads torchrun's ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` and joins the process group (gloo for CPU
tensors, NCCL for CUDA tensors). Without those variables, or before :func:`init_from_env`, every helper here
behaves as a world of one process: :func:`world` is ``(0, 1)``, :func:`shard` returns its argument, the
reductions do nothing, and :func:`~nrsfm_kit.train.fit` runs exactly as it always has.

A training script of one's own::

    from nrsfm_kit.train import TrainConfig, fit, distributed as dd

    dd.init_from_env()                       # a no-op outside torchrun
    gen = torch.Generator().manual_seed(0)   # the same on every rank

    def step(model, i):
        idx = dd.shard(torch.randint(0, N, (64,), generator=gen))  # 64 = the global batch
        return {"loss": ((model(X[idx]) - y[idx]) ** 2).mean()}

    fit(model, step, opt, TrainConfig(steps=1000), out_dir="run", state={"sampler": gen})
    dd.destroy()

What differs from one process. (1) Float round-off: the shards' sums are summed in another order, so the runs
agree to ~1e-7 relative per step in float32 (1e-16 in float64); a long float32 run of a chaotic training (Adam
normalises tiny gradient components to full-size steps) drifts apart like any two runs perturbed by 1e-7 would.
(2) Anything coupling the items of a batch is computed over the shard: batch statistics (BatchNorm normalises
over B / n items; its running statistics are averaged over the ranks after every step, :func:`average_buffers`,
so every rank evaluates with the same ones), in-batch negatives, permutations within the batch, unless the
method gathers them (PR-RRN does, :mod:`nrsfm_kit.nrsfm.prrrn`). (3) Randomness drawn per item inside the step on the shard (dropout masks, noise of
shape (B / n, ...)) comes from every rank's identical stream: draw it for the global batch and :func:`shard` it to
keep the single-process numbers. A step function that does not shard at all is still correct (every rank computes
the whole batch, the mean of equal gradients is that gradient), only not faster.

Every collective here must be called by every rank, in the same order (as with torch.distributed itself).
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_tensor",
    "all_reduce_gradients",
    "all_reduce_sum",
    "average_buffers",
    "any_rank",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "destroy",
    "gather_objects",
    "init_from_env",
    "is_main",
    "joined",
    "main_first",
    "main_only",
    "output_folder",
    "shard",
    "shard_slice",
    "world",
]

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` when torch.distributed is not initialised."""
    if not _active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """True on rank 0 (the process that shows progress and writes files), and in a single-process run."""
    return world()[0] == 0


def _default_backend() -> str:
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"  # CPU tensors (and pickled objects) through gloo, CUDA tensors through NCCL
    return "gloo"


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; True when this call initialised it.

    Reads ``RANK``, ``WORLD_SIZE`` (both needed: without them this is a no-op returning False, a single-process
    run), ``LOCAL_RANK`` (the GPU of this process on its machine, default ``RANK``), ``MASTER_ADDR`` and
    ``MASTER_PORT`` (the rendezvous of rank 0). Already initialised: False, nothing changes.

    Args:
        backend: a torch.distributed backend string; None = ``"gloo"`` on a machine without CUDA,
            ``"cpu:gloo,cuda:nccl"`` with CUDA (each tensor's device picks its backend; the process's CUDA
            device is set to ``LOCAL_RANK`` modulo the GPU count).

    Raises:
        ValueError naming the variable when one is missing or out of range.
    """
    if not dist.is_available():
        return False
    if _active():
        return False
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return False
    values = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        raw = env.get(key, env["RANK"] if key == "LOCAL_RANK" else None)
        try:
            values[key] = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected an integer (set by torchrun), found {raw!r}") from None
    rank, size = values["RANK"], values["WORLD_SIZE"]
    if size < 1:
        raise ValueError(f"WORLD_SIZE: expected >= 1, found {size}")
    if not 0 <= rank < size:
        raise ValueError(f"RANK: expected 0 <= RANK < WORLD_SIZE = {size}, found {rank}")
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(key):
            raise ValueError(f"{key}: expected the rendezvous address of rank 0 (set by torchrun), found it unset")
    backend = backend or _default_backend()
    if "nccl" in backend and torch.cuda.is_available():
        torch.cuda.set_device(values["LOCAL_RANK"] % torch.cuda.device_count())
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=size)
    return True


def destroy() -> None:
    """Leave the process group (when initialised); the end of a program that called :func:`init_from_env`."""
    if _active():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in a single-process run)."""
    if world()[1] > 1:
        dist.barrier()


def shard_slice(global_size: int, name: str = "batch_size", *, rank: int | None = None,
                world_size: int | None = None) -> slice:
    """This rank's contiguous part ``[r B/n, (r + 1) B/n)`` of a global batch of ``global_size`` items.

    Args:
        global_size: B, the global batch size (every rank the same).
        name: the argument named in the error.
        rank, world_size: override :func:`world` (tests, planning).

    Raises:
        ValueError ``"batch_size: expected a multiple of the world size 2, found 7"`` when B does not split into
        equal parts (unequal shards would weight the items of the smaller shards more in the averaged gradient).
    """
    r, n = world()
    r = r if rank is None else int(rank)
    n = n if world_size is None else int(world_size)
    if n < 1 or not 0 <= r < n:
        raise ValueError(f"rank: expected 0 <= rank < world_size = {n}, found {r}")
    b = int(global_size)
    if b < 0 or b % n:
        raise ValueError(f"{name}: expected a multiple of the world size {n}, found {global_size}")
    per = b // n
    return slice(r * per, (r + 1) * per)


def shard(batch, name: str = "batch_size", *, rank: int | None = None, world_size: int | None = None):
    """This rank's part of a global batch.

    Args:
        batch: an int (the global batch size B: returns this rank's ``slice`` of ``range(B)``) or the global
            batch itself along its first dimension (a tensor of generator-drawn frame indices (B,), a
            (B, ...) tensor, a list): returns this rank's contiguous part (B / world_size items). In a
            single-process run the batch itself comes back (the same object).
        name: the argument named in the error (:func:`shard_slice`).

    Example::

        idx = torch.randint(0, F, (B,), generator=gen)  # the same global draw on every rank
        mine = shard(idx)                               # (B / world_size,) this rank's frames
    """
    if isinstance(batch, bool):
        raise ValueError(f"{name}: expected an int or a batch (tensor, list), found a bool")
    if isinstance(batch, int):
        return shard_slice(batch, name, rank=rank, world_size=world_size)
    n = world()[1] if world_size is None else int(world_size)
    size = batch.shape[0] if isinstance(batch, torch.Tensor) else len(batch)
    sl = shard_slice(size, name, rank=rank, world_size=world_size)
    if n == 1:
        return batch
    return batch[sl]


def _flag_device() -> torch.device:
    """Where small bookkeeping tensors (flags, masks) go: the CPU unless the backend is CUDA-only (NCCL)."""
    backend = str(dist.get_backend()).lower()
    if "gloo" in backend or "cpu" in backend or "mpi" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (a collective; the flag itself alone)."""
    if world()[1] == 1:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_flag_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` (same shape on every rank) over the ranks, as a new tensor (no autograd); ``x`` itself
    (detached) in a single-process run."""
    if world()[1] == 1:
        return x.detach()
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def all_gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` (B_r, ...) concatenated along dim 0 in rank order (no autograd): with equal shards of a
    global batch, the global batch's values. All ranks must pass the same shape. ``x`` (detached) alone in a
    single-process run."""
    n = world()[1]
    if n == 1:
        return x.detach()
    shapes = gather_objects(tuple(x.shape))
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"x: expected the same shape on every rank, found {shapes}")
    src = x.detach().contiguous()
    as_u8 = src.dtype == torch.bool
    if as_u8:
        src = src.to(torch.uint8)
    parts = [torch.empty_like(src) for _ in range(n)]
    dist.all_gather(parts, src)
    out = torch.cat(parts)
    return out.bool() if as_u8 else out


def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks (in place; no-op in a single-process run).

    A parameter whose gradient is None on some ranks and not on others counts as a zero gradient there; one
    without a gradient on every rank keeps None (the optimiser then skips it, as in a single-process run). The
    gradients travel as one flat buffer per (device, dtype).
    """
    n = world()[1]
    if n == 1:
        return
    ps, seen = [], set()
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            ps.append(p)
    if not ps:
        return
    has = torch.tensor([p.grad is not None for p in ps], dtype=torch.int64, device=_flag_device())
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = []
    for p, h in zip(ps, has.tolist()):
        if not h:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        live.append(p)
    buckets: dict = {}
    for p in live:
        buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p)
    for group in buckets.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(n)
        offset = 0
        for p in group:
            k = p.grad.numel()
            p.grad.copy_(flat[offset : offset + k].view_as(p.grad))
            offset += k


def average_buffers(module: torch.nn.Module) -> None:
    """Replace each floating-point buffer of ``module`` by its mean over the ranks (in place; no-op on one
    process): BatchNorm's running mean and variance, updated by each rank from its own shard, stay one set on
    every rank (what a checkpoint saves and an evaluation uses), the average of the shards' statistics. Integer
    buffers (``num_batches_tracked``) advance alike on every rank and are left as they are."""
    n = world()[1]
    if n == 1:
        return
    buckets: dict = {}
    for b in module.buffers():
        if b.is_floating_point():
            buckets.setdefault((b.device, b.dtype), []).append(b)
    with torch.no_grad():
        for group in buckets.values():
            flat = torch.cat([b.reshape(-1) for b in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(n)
            offset = 0
            for b in group:
                k = b.numel()
                b.copy_(flat[offset : offset + k].view_as(b))
                offset += k


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s (in place), so all ranks start
    identical; no-op in a single-process run."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=src)


def broadcast_object(obj=None, src: int = 0):
    """Rank ``src``'s ``obj`` (any picklable object) on every rank; ``obj`` itself in a single-process run."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), as a list in rank order, on every rank; ``[obj]`` in a single-process
    run."""
    n = world()[1]
    if n == 1:
        return [obj]
    out = [None] * n
    dist.all_gather_object(out, obj)
    return out


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def main_only(fn: Callable, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` on rank 0 alone and give its result to every rank; when it raises, every rank
    raises that exception (so a refused output folder stops the whole run, not rank 0 alone while the others
    wait). The result must be picklable. A single-process run simply calls ``fn``."""
    if world()[1] == 1:
        return fn(*args, **kwargs)
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            broadcast_object((False, _portable(exc)))
            raise
        broadcast_object((True, result))
        return result
    ok, value = broadcast_object(None)
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def output_folder(path: str | os.PathLike | None, name: str = "out_dir"):
    """Check that ``path`` can be written and hold its lock (:func:`nrsfm_kit.utils.io.folder_lock`) for the
    ``with`` block: on several processes rank 0 alone checks and locks (the folder is rank 0's; a refusal is
    raised on every rank, :func:`main_only`); on one process the plain check and lock. ``None``: nothing.
    Errors name ``name``."""
    if path is None:
        yield None
        return
    from nrsfm_kit.utils.io import check_writable, folder_lock

    with contextlib.ExitStack() as held:
        def prepare() -> None:
            check_writable(path, name)
            held.enter_context(folder_lock(path, name))

        main_only(prepare)
        yield Path(path)


def main_first(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank, rank 0 first (its error is raised on every rank, :func:`main_only`),
    then the others: for work that rank 0 should do alone before the rest reuse it, e.g. building a data cache the
    other ranks then read. One process: simply ``fn(...)``."""
    held: dict = {}
    main_only(lambda: held.update(result=fn(*args, **kwargs)))
    return held["result"] if "result" in held else fn(*args, **kwargs)


def joined(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` inside the process group of torchrun's environment (:func:`init_from_env`; left
    again afterwards, :func:`destroy`); outside torchrun simply ``fn(...)``. The body of a command-line entry point
    that trains."""
    was_joined = init_from_env()
    try:
        return fn(*args, **kwargs)
    finally:
        if was_joined:
            destroy()
