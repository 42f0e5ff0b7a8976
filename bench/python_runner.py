#!/usr/bin/env python3
"""
Benchmark of the PyTorch runner (gpu-agent/python) with its reference model, driven directly
over the runner protocol on stdio: no Node, no edge. For each max_batch it starts a runner,
warms it, then keeps max_batch jobs in flight (as the agent does) and measures

- throughput: jobs per minute over N identical jobs (different seeds);
- per-step latency: the time between two sampling steps of a job (a batched step advances every
  job of the batch, so this is the step time of the whole batch);
- join wait: how long a job sent while another is sampling waits for its first step (from
  `job.run` to its first `job.progress` sampling), and the runner's own measure, from `job.run`
  to joining the batch;
- peak memory: VRAM (torch.cuda.max_memory_allocated) on CUDA, the runner's peak RSS on a CPU,
  both as the runner reports them at shutdown.

    /usr/bin/python3 bench/python_runner.py --size tiny --jobs 12
    /usr/bin/python3 bench/python_runner.py --size large --device cuda --jobs 16 --px 256 --frames 16 --results bench/RESULTS.md

`--results FILE` writes the figures as the section "## PyTorch runner" of FILE, replacing only
that section (or, with `--append`, adding this run to it), and leaves the other sections alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gpu-agent" / "python"))

from floodgate_runner.client import RunnerProcess  # noqa: E402

SECTION = "## PyTorch runner"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def stats_of(r: RunnerProcess) -> dict[str, Any]:
    for line in reversed(r.stderr):
        if line.startswith("stats "):
            return json.loads(line[len("stats ") :])
    return {}


def measure(args: argparse.Namespace, max_batch: int) -> dict[str, Any]:
    runner_args = [
        "--model", "reference",
        "--model-size", args.size,
        "--cache-dir", str(args.cache_dir),
        "--device", args.device,
        "--decode-device", args.decode_device,
        "--max-batch", str(max_batch),
    ]  # fmt: skip
    r = RunnerProcess(runner_args, python=sys.executable)
    try:
        started = time.monotonic()
        hello = r.wait_hello(120)
        version = hello["models"][0]["version"]
        r.send({"type": "runner.load", "model": "reference", "version": version})
        r.wait_until(lambda: bool(r.loads), 900)  # the first use generates the weights
        if r.loads[0]["type"] != "runner.loaded":
            raise RuntimeError(f"the model did not load: {r.loads[0]}")
        load_s = time.monotonic() - started
        job = {"prompt": "a red fox running through deep snow", "steps": args.steps, "frames": args.frames, "size": args.px}
        # Warm-up: the first batches pay for lazy initialisation (allocator, kernels).
        warm = [r.run(f"warm-{max_batch}-{i}", {**job, "seed": 1000 + i}) for i in range(max_batch)]
        r.wait_jobs([w.id for w in warm], 600)

        # Throughput: N jobs, max_batch in flight, a new one sent as soon as one ends.
        ids = [f"job-{max_batch}-{i}" for i in range(args.jobs)]
        pending = list(ids)
        t0 = time.monotonic()
        in_flight: list[str] = []
        while pending or in_flight:
            while pending and len(in_flight) < max_batch:
                jid = pending.pop(0)
                r.run(jid, {**job, "seed": ids.index(jid)})
                in_flight.append(jid)
            r.wait_until(lambda: any(r.jobs[j].end is not None for j in in_flight), 600)
            in_flight = [j for j in in_flight if r.jobs[j].end is None]
        elapsed = time.monotonic() - t0
        failed = [j for j in ids if r.jobs[j].end["type"] != "job.done"]
        if failed:
            raise RuntimeError(f"jobs failed: {[r.jobs[j].end for j in failed]}")
        gaps = []
        for j in ids:
            times = [t for t, _ in r.jobs[j].sampling()]
            gaps += [b - a for a, b in zip(times, times[1:])]
        latency = [r.jobs[j].ended - r.jobs[j].sent for j in ids]

        # Join wait: a job sent while a long one samples joins at the next step boundary.
        joins = []
        if max_batch > 1:
            for k in range(args.join_trials):
                long = r.run(f"long-{k}", {**job, "seed": 77 + k, "steps": args.steps * 2})
                r.wait_until(lambda: len(long.sampling()) >= 3, 600)
                late = r.run(f"late-{k}", {**job, "seed": 99 + k})
                r.wait_until(lambda: len(late.sampling()) >= 1, 600)
                joins.append(late.sampling()[0][0] - late.sent)
                r.wait_jobs([long.id, late.id], 600)
        code = r.close(60)
        if code != 0 or r.violations:
            raise RuntimeError(f"runner exit {code}, violations {r.violations}")
        st = stats_of(r)
    finally:
        r.kill()
    return {
        "max_batch": max_batch,
        "jobs": args.jobs,
        "elapsed_s": elapsed,
        "jobs_per_min": 60 * args.jobs / elapsed,
        "job_latency_s_median": statistics.median(latency),
        "step_ms_median": 1000 * statistics.median(gaps),
        "step_ms_p95": 1000 * pct(gaps, 0.95),
        "join_first_step_ms_median": 1000 * statistics.median(joins) if joins else None,
        "join_wait_ms_runner_mean": st.get("join_wait_ms_mean"),
        "peak_rss_bytes": st.get("peak_rss_bytes"),
        "peak_vram_bytes": st.get("peak_vram_bytes"),
        "load_s": load_s,
        "runner_version": hello["version"],
        "model_version": version,
    }


def blas_in_use() -> str:
    """The BLAS library this process mapped (the runner loads the same one): the CPU figures
    depend on it, and Debian's default libblas3 is the slow reference implementation."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return "unknown"
    return ", ".join(sorted(libs)) or "none mapped"


def header(args: argparse.Namespace, device: str) -> str:
    lines = [SECTION, ""]
    if device == "cpu":
        lines += [
            "**No GPU was lent to this task: these are CPU figures**, not GPU ones (PyTorch "
            f"{args.torch} from Debian's `python3-torch`, {platform.machine()}, {os.cpu_count()} cores; PyTorch "
            f"used {args.threads} thread(s) for sampling, with the decode thread beside it). On a CPU a batched "
            "step costs nearly as much per job as a single one, so batching only saves per-step overhead; the "
            "≥ 2× goal at max_batch 4 is a GPU goal, to be measured with "
            "`bench/python_runner.py --size large --device cuda --px 256 --frames 16`.",
            "",
        ]
    lines += [
        "Each run keeps max_batch jobs in flight (a new one is sent as one ends, as the agent does). _Step_ is "
        "the time between two sampling steps of a job, which with batching is the step of the whole batch. "
        "_Join: to first step_ is from `job.run` to the first sampling step of a job sent while another job "
        "samples (it waits for the step in progress, its own text encoding and noise, then one batched step); "
        "_to batch_ is the runner's own mean from `job.run` to joining the batch. Peak memory is the runner's "
        "(VRAM on CUDA, RSS on a CPU).",
        "",
    ]
    return "\n".join(lines)


def block(args: argparse.Namespace, rows: list[dict[str, Any]], device: str, cmd: str) -> str:
    gib = 1024**3
    by = {row["max_batch"]: row for row in rows}
    lines = [
        f"### `{rows[0]['model_version']}`: {args.steps} steps, {args.frames} frames of {args.px}×{args.px}, "
        f"{args.jobs} jobs, on `{device}`",
        "",
        f"Runner `{rows[0]['runner_version']}`, decode on `{args.decode_device}`, BLAS: `{blas_in_use()}`; "
        f"load average {args.load_before:.1f} before the run, {args.load_after:.1f} after (other work on the machine "
        "makes CPU figures noisy).",
        "",
    ]
    table = [
        [
            "max_batch",
            "jobs/min",
            "job latency (median)",
            "step (median / p95)",
            "join: to first step (median)",
            "join: to batch (mean)",
            "peak memory",
        ]
    ]
    for row in rows:
        mem = (
            f"{row['peak_vram_bytes'] / gib:.2f} GiB VRAM"
            if row.get("peak_vram_bytes")
            else f"{row['peak_rss_bytes'] / gib:.2f} GiB RSS"
        )
        join1 = f"{row['join_first_step_ms_median']:.0f} ms" if row["join_first_step_ms_median"] is not None else "–"
        join2 = f"{row['join_wait_ms_runner_mean']:.0f} ms" if row["join_wait_ms_runner_mean"] is not None else "–"
        table.append(
            [
                str(row["max_batch"]),
                f"{row['jobs_per_min']:.1f}",
                f"{row['job_latency_s_median']:.2f} s",
                f"{row['step_ms_median']:.1f} / {row['step_ms_p95']:.1f} ms",
                join1,
                join2,
                mem,
            ]
        )
    # Padded as oxfmt pads Markdown tables, so `npm run format:check` passes on the file.
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    cell = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    lines += [cell(table[0]), "| " + " | ".join("-" * w for w in widths) + " |", *map(cell, table[1:])]
    if 1 in by and len(by) > 1:
        top = max(by)
        lines += ["", f"Throughput at max_batch {top} vs 1: **{by[top]['jobs_per_min'] / by[1]['jobs_per_min']:.2f}×**."]
    lines += ["", "```sh", cmd, "```", ""]
    return "\n".join(lines)


def write_section(path: Path, head: str, body: str, append: bool) -> None:
    """Writes the '## PyTorch runner' section of `path` (up to the next '## ' heading): replaced by
    `head` + `body`, or with `append`, `body` added at its end. Other sections are left alone."""
    old = path.read_text("utf-8") if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(old)
    if found and append:
        text = found.group(0).rstrip("\n") + "\n\n" + body
    else:
        text = head + "\n" + body
    if found:
        new = old[: found.start()] + text + ("\n" if old[found.end() :] else "") + old[found.end() :]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new, "utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=["tiny", "small", "large"], default="tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--decode-device", default="same")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--px", type=int, default=64, help="frame size in pixels (a multiple of 16)")
    ap.add_argument("--batches", default="1,4", help="max_batch values to compare")
    ap.add_argument("--join-trials", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".floodgate" / "bench-python")
    ap.add_argument("--results", type=Path, help="write the section '## PyTorch runner' into this Markdown file")
    ap.add_argument("--append", action="store_true", help="with --results: add this run to the section, keep what is there")
    args = ap.parse_args()
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    args.device = device
    args.threads = torch.get_num_threads()
    args.torch = torch.__version__
    args.load_before = os.getloadavg()[0]
    rows = []
    for mb in [int(b) for b in args.batches.split(",")]:
        row = measure(args, mb)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    args.load_after = os.getloadavg()[0]
    env = [f"{k}={os.environ[k]}" for k in ("LD_LIBRARY_PATH", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if os.environ.get(k)]
    cmd = " ".join([*env, "/usr/bin/python3", os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    head, body = header(args, device), block(args, rows, device, cmd)
    print(head + "\n" + body)
    if args.results:
        write_section(args.results, head, body, args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
