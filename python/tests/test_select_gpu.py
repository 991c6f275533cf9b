"""GPU tests of the Python binding's top-k selection against torch.

Run on a machine with a GPU:  python3 python/tests/test_select_gpu.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import topkattn  # noqa: E402


def expected(x, k):
    """(values, indices) by value desc, index asc, NaN last, computed with stable sorts."""
    rows = []
    for row in x.double().cpu():
        neg = torch.where(torch.isnan(row), torch.full_like(row, float("inf")), -row)
        order = torch.sort(neg, stable=True).indices
        order = order[torch.sort(torch.isnan(row[order]).to(torch.int8), stable=True).indices]
        rows.append(order[:k])
    idx = torch.stack(rows)
    return x.cpu().gather(1, idx), idx.to(torch.int32)


def check(rt, x, k, sorted=True):
    values, indices = rt.topk(x, k, sorted=sorted)
    torch.cuda.synchronize()
    want_v, want_i = expected(x, k)
    got_i = indices.cpu()
    if not sorted:
        got_i = torch.stack([r[torch.argsort(r)] for r in got_i])
        want_i = torch.stack([r[torch.argsort(r)] for r in want_i])
        assert torch.equal(got_i, want_i), "unsorted sets differ"
        return
    assert torch.equal(got_i, want_i), f"indices differ: {(got_i != want_i).sum()} slots"
    assert torch.equal(values.cpu().isnan(), want_v.isnan())
    assert torch.equal(values.cpu().nan_to_num(), want_v.nan_to_num())


def main():
    torch.manual_seed(0)
    rt = topkattn.Runtime()
    dev = "cuda"
    cases = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rows, n, k in ((1, 131072, 2048), (32, 100003, 2048), (300, 4099, 64), (5, 777, 777)):
            check(rt, torch.randn(rows, n, device=dev).to(dtype), k)
            cases += 1
        ties = torch.randint(0, 3, (4, 50000), device=dev).to(dtype)  # ties: lower index first
        check(rt, ties, 1000)
        special = torch.randn(8, 3000, device=dev)
        special[:, ::7] = float("nan")
        special[:, 1::11] = float("-inf")
        special[:, 2::13] = -0.0
        check(rt, special.to(dtype), 2500)
        check(rt, torch.randn(3, 20001, device=dev).to(dtype), 300, sorted=False)
        cases += 3
    # Agrees with torch.topk where the values are distinct.
    x = torch.randn(64, 32768, device=dev)
    v, i = rt.topk(x, 512)
    tv, ti = torch.topk(x, 512)
    assert torch.equal(v, tv) and torch.equal(i.long(), ti)
    # A strided view (rows not aligned) works as is.
    base = torch.randn(16, 10001, device=dev)
    check(rt, base[:, 1:], 100)
    # Lengths on the device; padded slots hold -1 / -inf.
    plan = rt.plan_select(64, max_rows=4, max_n=1000, pad=True)
    x = torch.randn(4, 1000, device=dev)
    lengths = torch.tensor([1000, 10, 0, 64], dtype=torch.int32, device=dev)
    values = torch.empty(4, 64, device=dev)
    indices = torch.empty(4, 64, dtype=torch.int32, device=dev)
    plan.run(x, values, indices, lengths=lengths)
    torch.cuda.synchronize()
    for r, n in enumerate((1000, 10, 0, 64)):
        want_v, want_i = expected(x[r:r + 1, :n], 64)
        got = indices[r].cpu()
        assert torch.equal(got[:min(n, 64)], want_i[0]), f"row {r}"
        assert (got[min(n, 64):] == -1).all() and (values[r, min(n, 64):] == float("-inf")).all()
    print(f"select: {cases + 3} cases passed")


if __name__ == "__main__":
    main()
