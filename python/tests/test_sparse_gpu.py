"""GPU tests of the Python binding's sparse attention against a PyTorch fp64 reference.

Run on a machine with a GPU:  python3 python/tests/test_sparse_gpu.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import topkattn  # noqa: E402


def reference(q, k, v, lens, idx, per_group, scale):
    B, Q, Hq, d = q.shape
    Hkv = k.shape[1]
    G = Hq // Hkv
    out = torch.zeros(B, Q, Hq, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        for j in range(Q):
            n = int(lens[b]) - Q + j + 1
            for h in range(Hq):
                lst = idx[b, j, h // G if per_group else h].long()
                lst = lst[(lst >= 0) & (lst < n)]
                if lst.numel() == 0:
                    continue
                s = (k[b, h // G, lst].double() @ q[b, j, h].double()) * scale
                out[b, j, h] = torch.softmax(s, 0) @ v[b, h // G, lst].double()
    return out


def main():
    torch.manual_seed(0)
    rt = topkattn.Runtime()
    # GQA, per-group lists.
    B, Q, Hq, Hkv, N, d, w = 2, 1, 32, 8, 4096, 128, 1024
    q = torch.randn(B, Q, Hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, Hkv, N, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, Hkv, N, d, device="cuda", dtype=torch.bfloat16)
    lens = torch.tensor([N, N - 100], dtype=torch.int32, device="cuda")
    idx = torch.stack([torch.randperm(N, device="cuda")[:w] for _ in range(B * Q * Hkv)]).view(B, Q, Hkv, w)
    idx = idx.to(torch.int32)
    idx[:, :, :, -7:] = -1
    plan = rt.plan_sparse(Hq, Hkv, d, w, max_batch=B, select="group")
    out = torch.empty(B, Q, Hq, d, device="cuda", dtype=torch.bfloat16)
    plan.run(q, k, v, lens, idx, out)
    torch.cuda.synchronize()
    want = reference(q.cpu(), k.cpu(), v.cpu(), lens.cpu(), idx.cpu(), True, d ** -0.5)
    err = ((out.cpu().double() - want).norm() / want.norm()).item()
    assert err < 1e-2, err
    # MLA: 128 heads, one latent KV head, values are the first 512 of each 576-wide key row.
    B, Hq, N, w = 2, 128, 3000, 512
    q = torch.randn(B, 1, Hq, 576, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(B, 1, N, 576, device="cuda", dtype=torch.bfloat16)
    lens = torch.tensor([N, 2000], dtype=torch.int32, device="cuda")
    idx = torch.stack([torch.randperm(2000, device="cuda")[:w] for _ in range(B)]).view(B, 1, 1, w).to(torch.int32)
    plan = rt.plan_sparse(Hq, 1, 576, w, max_batch=B, head_dim_v=512, shared_kv=True, select="group")
    out = torch.empty(B, 1, Hq, 512, device="cuda", dtype=torch.bfloat16)
    lse = torch.empty(B, 1, Hq, device="cuda")
    plan.run(q, kv, None, lens, idx, out, lse=lse)
    torch.cuda.synchronize()
    want = reference(q.cpu(), kv.cpu(), kv[..., :512].cpu(), lens.cpu(), idx.cpu(), True, 576 ** -0.5)
    err = ((out.cpu().double() - want).norm() / want.norm()).item()
    assert err < 1e-2, err
    print("sparse attention: ok")


if __name__ == "__main__":
    main()
