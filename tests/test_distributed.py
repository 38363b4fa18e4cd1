"""Two Gloo processes give the same loss and gradients as one process on the whole batch.

Workers are spawned from the test itself (not by re-launching a command), so a failing child
fails the test with its traceback.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medcontrast.losses import nt_xent, vicreg_loss

B_LOCAL, D_IN, D = 4, 6, 5


def _data():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(2 * B_LOCAL, D_IN, generator=g)
    x2 = torch.randn(2 * B_LOCAL, D_IN, generator=g)
    weight = torch.randn(D, D_IN, generator=g)
    groups = torch.tensor([0, 1, 1, 2, 3, 3, 4, 0])
    return x1, x2, weight, groups


def _model(weight):
    model = torch.nn.Linear(D_IN, D, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    return model


def _loss(name: str, z1, z2, groups, gather: bool = True):
    """The losses whose statistics span the global batch: NT-Xent's negatives (with and without
    same-patient masking), VICReg's variance and covariance."""
    if name == "vicreg":
        return vicreg_loss(z1, z2, gather=gather)[0]
    return nt_xent(
        z1, z2, 0.2, groups=groups, mask_same_group=name == "nt_xent_masked", gather=gather
    )


def _worker(rank: int, world: int, port: int, out: str, loss: str) -> None:
    _run(rank, world, port, out, loss)
    # Skip the interpreter's teardown: Gloo's threads can still abort a finished child there
    # ("terminate called without an active exception", seen under load in CI). An exception
    # above still reaches mp.spawn with its traceback.
    os._exit(0)


def _run(rank: int, world: int, port: int, out: str, name: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x1, x2, weight, groups = _data()
        rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        model = torch.nn.parallel.DistributedDataParallel(_model(weight))
        loss = _loss(name, model(x1[rows]), model(x2[rows]), groups[rows])
        loss.backward()
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        if rank == 0:
            torch.save({"loss": torch.stack(losses).mean(), "grad": model.module.weight.grad}, out)
        del model  # DDP's reducer holds the process group: release it before the group goes
        # Both ranks leave together: a rank that tears Gloo down while the other still works
        # can abort it ("terminate called without an active exception", seen under load).
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["nt_xent", "nt_xent_masked", "vicreg"])
def test_two_processes_equal_one(tmp_path, name):
    x1, x2, weight, groups = _data()
    model = _model(weight)
    loss = _loss(name, model(x1), model(x2), groups, gather=False)
    loss.backward()
    out = str(tmp_path / "ddp.pt")
    with socket.socket() as sock:  # a port the OS says is free, not a guess that may collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(2, port, out, name), nprocs=2, join=True)
    ddp = torch.load(out)
    assert float(ddp["loss"]) == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(ddp["grad"], model.weight.grad, rtol=1e-5, atol=1e-6)
