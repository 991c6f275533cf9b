"""GPU tests of topkattn.analyze: the fidelity plan against the CPU path on the same inputs.

Run on a machine with a GPU:  python3 python/tests/test_fidelity_gpu.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import topkattn  # noqa: E402


def main():
    torch.manual_seed(0)
    rt = topkattn.Runtime()
    for dtype, (B, Hq, Hkv, N, d, k) in ((torch.bfloat16, (2, 32, 8, 32768, 128, 2048)),
                                         (torch.float16, (3, 8, 2, 5001, 64, 100)),
                                         (torch.float32, (1, 16, 16, 1000, 256, 1000))):
        q = torch.randn(B, Hq, d, device="cuda").to(dtype)
        kc = torch.randn(B, Hkv, N, d, device="cuda").to(dtype)
        idx = torch.randint(-1, N, (B, Hq, k), device="cuda", dtype=torch.int32)
        lens = torch.tensor([N - 7 * b for b in range(B)], dtype=torch.int32, device="cuda")
        gpu = topkattn.analyze(q, kc, k, indices=idx, seq_lens=lens, runtime=rt)
        cpu = topkattn.analyze(q.cpu(), kc.cpu(), k, indices=idx.cpu(), seq_lens=lens.cpu())
        torch.cuda.synchronize()
        for name in ("recall", "retained_mass", "entropy"):
            g, c = gpu[name].cpu(), cpu[name]
            assert torch.allclose(g, c, rtol=1e-3, atol=1e-5), (name, (g - c).abs().max())
        print(f"fidelity {dtype} B={B} N={N}: gpu == cpu; mean recall "
              f"{cpu['recall'].mean():.3f}, mass {cpu['retained_mass'].mean():.3f}, "
              f"entropy {cpu['entropy'].mean():.3f}")


if __name__ == "__main__":
    main()
