"""Speed and memory of the WKD-L loss: ours (shared masked kernel) vs the released per-sample algorithm.

One forward + backward of ``L_t + γ·W`` w.r.t. the student logits, at batch B
and C classes (default the ImageNet setting, B = 256, C = 1000), on CPU.

* ``ours``: ``mdistiller.losses.wkd.wkd_logit_parts`` — one shared (C, C)
  Sinkhorn kernel, target class masked out, batched (B, C) @ (C, C) products.
* ``official``: a faithful re-implementation (below) of the release's
  ``wkd_logit_loss_with_speration`` (github.com/JiamingLv/WKD): gather the
  non-target logits, repeat the cost to (B, C, C), gather each sample's
  (C − 1, C − 1) sub-cost, clip it, ``exp``, batched ``bmm`` Sinkhorn and the
  (B, C − 1, C − 1) plan.

Each variant runs in its own subprocess; peak extra memory is the growth of the
process's peak RSS (``resource.getrusage(...).ru_maxrss``) during the first
forward + backward, measured from the RSS just before it (inputs already
built). Time is the median over ``--repeats`` runs (the official one defaults
to a single run: it takes ~30 s and ~8 GB at B = 256, C = 1000). Values and
gradients of the two are compared.

    python benchmarks/wkd_logit_speed.py                   # both, B=256, C=1000
    python benchmarks/wkd_logit_speed.py --skip-official   # ours only
    python benchmarks/wkd_logit_speed.py --batch 64 --classes 100
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

TEMPERATURE = 2.0  # ImageNet WKD-L recipe
REG = 0.05
NUM_ITER = 10
GAMMA = 30.0


# ---------------------------------------------------------------------------
# The released algorithm, re-implemented step by step (baseline)
# ---------------------------------------------------------------------------


def official_sinkhorn(w1, w2, cost, reg, max_iter):
    """Per-sample Sinkhorn of the release: u⁰ = 1/n, v = w2/(Kᵀu + 1e-8), u = w1/(Kv + 1e-8), plan u K v."""
    batch, dim = w1.shape
    w1 = w1.unsqueeze(-1)
    w2 = w2.unsqueeze(-1)
    u = torch.ones_like(w1) / dim
    K = torch.exp(-cost / reg)
    Kt = K.transpose(2, 1)
    for _ in range(max_iter):
        v = w2 / (torch.bmm(Kt, u) + 1e-8)
        u = w1 / (torch.bmm(K, v) + 1e-8)
    return u.reshape(batch, -1, 1) * K * v.reshape(batch, 1, -1)


def official_wkd_logit_loss(logits_student, logits_teacher, target, temperature, gamma, cost, reg, num_iter):
    """The release's ``wkd_logit_loss_with_speration`` (raw cost in, relu + 1e-8 applied inside)."""
    label = target.view(-1, 1)
    n, c = logits_student.shape
    s_i = F.log_softmax(logits_student, dim=1)
    t_i = F.softmax(logits_teacher, dim=1)
    loss_t = -(torch.gather(t_i, 1, label).detach() * torch.gather(s_i, 1, label)).mean()
    mask = torch.ones_like(logits_student).scatter_(1, label, 0).bool()
    zs = logits_student[mask].reshape(n, -1)
    zt = logits_teacher[mask].reshape(n, -1)
    cost = cost.repeat(n, 1, 1)
    pair_mask = mask.unsqueeze(1) * mask.unsqueeze(2)
    cost = cost[pair_mask].reshape(n, c - 1, c - 1)
    ps = F.softmax(zs / temperature, dim=-1)
    pt = F.softmax(zt / temperature, dim=-1)
    cost = F.relu(cost) + 1e-8
    flow = official_sinkhorn(ps, pt, cost, reg, num_iter)
    w = (flow * cost).sum(-1).sum(-1).mean()
    return loss_t + gamma * w


# ---------------------------------------------------------------------------
# One variant in a subprocess
# ---------------------------------------------------------------------------


def make_inputs(batch, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits_student = torch.randn(batch, classes, generator=g) * 2.0
    logits_teacher = torch.randn(batch, classes, generator=g) * 3.0
    target = torch.randint(0, classes, (batch,), generator=g)
    proto = F.normalize(torch.randn(classes, 64, generator=g), dim=1)
    raw = 1.0 - torch.exp(-(1.0 - proto @ proto.t()))  # fc-style cost, sharpened with s = 1
    return logits_student, logits_teacher, target, raw


def current_rss_kb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def run_variant(variant, batch, classes, repeats, out_path):
    from mdistiller.losses.class_cost import prepare_cost_matrix
    from mdistiller.losses.wkd import wkd_logit_parts
    from mdistiller.ot import sinkhorn_kernel

    logits_student, logits_teacher, target, raw = make_inputs(batch, classes)
    if variant == "ours":
        cost = prepare_cost_matrix(raw, 0)  # already sharpened: relu + 1e-8 only
        kernel = sinkhorn_kernel(cost, REG)  # once per cost matrix in the distiller

        def step(z):
            loss_t, w = wkd_logit_parts(z, logits_teacher, target, cost, TEMPERATURE, REG, NUM_ITER, kernel=kernel)
            return loss_t + GAMMA * w

    else:

        def step(z):
            return official_wkd_logit_loss(z, logits_teacher, target, TEMPERATURE, GAMMA, raw, REG, NUM_ITER)

    # Warm up the libraries (thread pools, allocator) on a 2-sample problem so the
    # measurement sees only what the loss itself needs.
    warm = logits_student[:2].clone().requires_grad_(True)
    _warm_target, _warm_teacher = target, logits_teacher
    target, logits_teacher = target[:2], logits_teacher[:2]
    step(warm).backward()
    target, logits_teacher = _warm_target, _warm_teacher
    del warm

    times = []
    value = grad = None
    rss_before = current_rss_kb()
    peak_extra_kb = None
    for i in range(repeats):
        z = logits_student.clone().requires_grad_(True)
        start = time.perf_counter()
        loss = step(z)
        loss.backward()
        times.append(time.perf_counter() - start)
        if i == 0:
            peak_extra_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            value, grad = loss.detach(), z.grad.detach()
        del loss, z
    torch.save({"value": value, "grad": grad}, out_path + ".pt")
    times.sort()
    with open(out_path, "w") as f:
        json.dump({"times": times, "median": times[len(times) // 2], "peak_extra_mb": peak_extra_kb / 1024.0}, f)


def spawn(variant, batch, classes, repeats, threads):
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", variant, "--batch", str(batch), "--classes", str(classes),
           "--repeats", str(repeats)]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run(cmd + ["--_out", path], check=True, env=env)
    with open(path) as f:
        result = json.load(f)
    result.update(torch.load(path + ".pt", weights_only=True))
    os.remove(path)
    os.remove(path + ".pt")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median reported)")
    parser.add_argument("--official-repeats", type=int, default=1)
    parser.add_argument("--skip-official", action="store_true", help="do not run the released per-sample algorithm")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the subprocesses (0: torch's default)")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        run_variant(args._child, args.batch, args.classes, args.repeats, args._out)
        return

    print("WKD-L forward+backward, B={}, C={}, T={}, lambda={}, iters={}, torch {} ({} threads)".format(
        args.batch, args.classes, TEMPERATURE, REG, NUM_ITER, torch.__version__, args.threads or torch.get_num_threads()))
    results = {"ours": spawn("ours", args.batch, args.classes, args.repeats, args.threads)}
    if not args.skip_official:
        results["official"] = spawn("official", args.batch, args.classes, args.official_repeats, args.threads)

    print("{:<10} {:>12} {:>18} {:>14}".format("variant", "time (s)", "peak extra (MB)", "loss"))
    for name, r in results.items():
        print("{:<10} {:>12.3f} {:>18.1f} {:>14.6f}".format(name, r["median"], r["peak_extra_mb"], float(r["value"])))
    if "official" in results:
        ours, off = results["ours"], results["official"]
        value_err = abs(float(ours["value"]) - float(off["value"]))
        grad_err = (ours["grad"] - off["grad"]).abs().max().item()
        grad_scale = off["grad"].abs().max().item()
        print("speed-up: {:.1f}x   memory: {:.1f}x less".format(
            off["median"] / ours["median"], off["peak_extra_mb"] / max(ours["peak_extra_mb"], 1e-3)))
        print("|value diff| = {:.3e} (rel {:.1e})   max |grad diff| = {:.3e} (max |grad| {:.3e})".format(
            value_err, value_err / abs(float(off["value"])), grad_err, grad_scale))


if __name__ == "__main__":
    main()
