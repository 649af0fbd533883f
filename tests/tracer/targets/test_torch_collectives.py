"""torch.distributed collectives under ``--target torch``: reimpl's ``collective.*`` spans.

Two real gloo ranks started with ``torch.multiprocessing.spawn``: each spawned
rank attaches the torch target itself and records its collectives with the
attributes ``torchscope merge`` matches ranks by (group, seq, op, sizes, dtype).
"""

from __future__ import annotations

import pytest
from torchscope_cli import torchscope

import tracer

PROGRAM = """
import socket
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, world, port):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    t = torch.ones(3) * rank
    dist.all_reduce(t)
    out = [torch.zeros(3) for _ in range(world)]
    dist.all_gather(out, t)
    pair = dist.new_group([0, 1])
    dist.broadcast(t, src=0, group=pair)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp.spawn(run, args=(2, port), nprocs=2)
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_collectives_of_each_rank_carry_group_and_sequence(tmp_path):
    program = tmp_path / "ranks.py"
    program.write_text(PROGRAM)
    out = str(tmp_path / "ranks.tsdb")
    result = torchscope("record", "--no-imports", "--target", "torch", "-o", out, str(program))
    assert result.returncode == 0, result.stderr
    trace = tracer.load(out)
    per_part: dict[int, list[tuple]] = {}
    for row in sorted(range(len(trace.kind)), key=lambda r: trace.start_ns[r]):
        kind = trace.kind_of(row)
        if kind.startswith("collective."):
            a = trace.attrs(row)
            per_part.setdefault(int(trace.part[row]), []).append(
                (kind, a["group"], a["seq"], a["op"], a["sizes"], a["dtype"])
            )
    assert len(per_part) == 2  # one part per rank, the same calls in the same order
    first, second = per_part.values()
    assert first == second
    assert first == [
        ("collective.all_reduce", "world", 0, "all_reduce", [[3]], "float32"),
        ("collective.all_gather", "world", 1, "all_gather", [[3]], "float32"),
        ("collective.broadcast", "0,1", 0, "broadcast", [[3]], "float32"),
        ("collective.barrier", "world", 2, "barrier", [], None),
    ]
