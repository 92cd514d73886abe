"""Where a GPU training step's time goes: the transformer step of gpu_bench.py taken apart,
each piece timed for Phalanx and PyTorch CUDA in the same run, in float32 and float16.

    python benchmarks/gpu_breakdown.py

Pieces (forward + backward unless named otherwise): a feed-forward GEMM, the attention scores'
batched GEMM and their softmax on raw arrays (is the array library itself the gap?), linear,
scaled-dot-product attention,
layer norm, softmax, one encoder layer, an AdamW step over the layer's parameters, and the
whole step's host time without synchronisation (a step that takes as long on the host as on
the GPU is bound by Python, not by kernels).
"""
import time

import numpy as np

from gpu_bench import gpu_time


def timed(fn, sync):
    """Median milliseconds of fn() between synchronisations."""
    return gpu_time(fn, 10, 3, sync) * 1e3


def main():
    import cupy as cp
    import torch
    import phalanx as px
    import phalanx.nn.functional as PF
    rng = np.random.default_rng(0)
    psync, tsync = px.cuda.synchronize, torch.cuda.synchronize
    b, s, d, h, f = 32, 512, 1024, 16, 4096

    def pair(*shape, grad=True):
        a = rng.standard_normal(shape).astype(np.float32) * 0.1
        return (px.tensor(a, device="cuda", requires_grad=grad),
                torch.tensor(a, device="cuda", requires_grad=grad))

    x, tx = pair(b, s, d)
    w1, tw1 = pair(f, d)
    q, tq = pair(b, h, s, d // h)
    k, tk = pair(b, h, s, d // h)
    v, tv = pair(b, h, s, d // h)
    ln_w, tln_w = pair(d)
    ln_b, tln_b = pair(d)
    layer = px.nn.TransformerEncoderLayer(d, h, f, dropout=0.0, batch_first=True).to("cuda")
    tlayer = torch.nn.TransformerEncoderLayer(d, h, f, dropout=0.0, batch_first=True).cuda()
    tlayer.load_state_dict({n: torch.tensor(p.detach().cpu().numpy(), device="cuda")
                            for n, p in layer.state_dict().items()})
    opt = px.optim.AdamW(layer.parameters(), lr=1e-4)
    topt = torch.optim.AdamW(tlayer.parameters(), lr=1e-4)

    for dtype in ("float32", "float16"):
        half = dtype == "float16"
        a16 = cp.asarray(rng.standard_normal((b * s, d)), dtype=dtype)
        bw = cp.asarray(rng.standard_normal((d, f)), dtype=dtype)
        ta16, tbw = torch.as_tensor(a16, device="cuda"), torch.as_tensor(bw, device="cuda")
        print(f"== {dtype}", flush=True)
        t_cupy = timed(lambda: a16 @ bw, cp.cuda.Device().synchronize)
        print(f"  raw GEMM ({b * s}x{d} @ {d}x{f}): cupy {t_cupy:.2f} ms"
              f"  torch {timed(lambda: ta16 @ tbw, tsync):.2f} ms", flush=True)
        # attention's pieces on raw arrays: the batched GEMM of the scores, then a softmax
        # of them as the fused attention runs it (half precision staged through float32)
        from phalanx.nn.functional.attention import _softmax_rows
        hq = cp.asarray(rng.standard_normal((b, h, s, d // h)), dtype=dtype)
        thq = torch.as_tensor(hq, device="cuda")
        scores = hq @ hq.swapaxes(-1, -2)
        t_scores = timed(lambda: hq @ hq.swapaxes(-1, -2), cp.cuda.Device().synchronize)
        print(f"  raw batched GEMM ({b}x{h}x{s}x{d // h} @ ^T): cupy {t_scores:.2f} ms  torch "
              f"{timed(lambda: thq @ thq.transpose(-1, -2), tsync):.2f} ms", flush=True)
        t_soft = timed(lambda: _softmax_rows(scores.copy()), cp.cuda.Device().synchronize)
        print(f"  softmax of the scores: phalanx {t_soft:.2f} ms (a copy included)  torch "
              f"{timed(lambda: torch.softmax(torch.as_tensor(scores), -1), tsync):.2f} ms",
              flush=True)

        def both(name, pfn, tfn):
            def p():
                with px.autocast("cuda", dtype=px.float16, enabled=half):
                    out = pfn()
                out.float().sum().backward()

            def t():
                with torch.autocast("cuda", dtype=torch.float16, enabled=half):
                    out = tfn()
                out.float().sum().backward()
            try:
                tp, tt = timed(p, psync), timed(t, tsync)
                print(f"  {name:28s} phalanx {tp:8.2f} ms  torch {tt:8.2f} ms  "
                      f"ratio {tp / tt:5.2f}", flush=True)
            except Exception as e:  # one piece failing must not hide the others
                print(f"  {name:28s} FAILED {e!r}", flush=True)

        both("linear", lambda: PF.linear(x, w1), lambda: torch.nn.functional.linear(tx, tw1))
        both("sdpa", lambda: PF.scaled_dot_product_attention(q, k, v),
             lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv))
        both("layer_norm", lambda: PF.layer_norm(x, (d,), ln_w, ln_b),
             lambda: torch.nn.functional.layer_norm(tx, (d,), tln_w, tln_b))
        both("softmax", lambda: PF.softmax(x, -1), lambda: torch.softmax(tx, -1))
        both("encoder layer", lambda: layer(x), lambda: tlayer(tx))

        def p_opt():
            opt.step()

        def t_opt():
            topt.step()
        print(f"  {'adamw step (grads set)':28s} phalanx {timed(p_opt, psync):8.2f} ms  torch "
              f"{timed(t_opt, tsync):8.2f} ms", flush=True)

        def p_step():
            opt.zero_grad()
            with px.autocast("cuda", dtype=px.float16, enabled=half):
                loss = layer(x).float().square().mean()
            loss.backward()
            opt.step()
        p_step()
        psync()
        t0 = time.perf_counter()
        p_step()
        host = (time.perf_counter() - t0) * 1e3
        psync()
        total = (time.perf_counter() - t0) * 1e3
        print(f"  {'layer step host / total':28s} {host:8.2f} ms / {total:8.2f} ms", flush=True)


if __name__ == "__main__":
    main()
