"""
The runner process: `python3 gpu-agent/python/serve.py …` (or `python3 -m floodgate_runner …`).
Frames go out on stdout and come in on stdin; stderr carries log lines. The agent starts it
(gpu-agent/main.ts, `--runner python`).

    --model reference --model-size tiny --cache-dir DIR   the built-in reference model, its
                                                          random weights made in DIR on first use
    --model-dir DIR                                       or a model version's directory
    --device auto|cpu|cuda|cuda:N    where sampling runs (auto: cuda when there is one; env FLOODGATE_DEVICE)
    --decode-device DEVICE|same      where the VAE decodes (default: the sampling device; env FLOODGATE_DECODE_DEVICE)
    --max-batch N                    jobs sampled together (runner.hello max_batch)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import __version__
from .engine import STOP, ModelEntry, Runner
from .model import Manifest, load_model
from .protocol import FrameWriter, ProtocolError, read_messages
from .schema import TO_RUNNER


def _log(line: str) -> None:
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="floodgate_runner", description="Floodgate's PyTorch runner (stdio, msgpack frames).")
    ap.add_argument("--model", default="reference", help="a built-in model (reference)")
    ap.add_argument("--model-size", default="tiny", choices=["tiny", "small", "large"])
    ap.add_argument("--model-dir", type=Path, help="serve the model version in this directory instead")
    ap.add_argument("--cache-dir", type=Path, default=Path(".floodgate/agent"))
    # The agent passes its environment on: these two are set there, not by agent flags.
    ap.add_argument("--device", default=os.environ.get("FLOODGATE_DEVICE") or "auto")
    ap.add_argument("--decode-device", default=os.environ.get("FLOODGATE_DECODE_DEVICE") or "same")
    ap.add_argument("--max-batch", type=int, default=4)
    args = ap.parse_args(argv)
    if not 1 <= args.max_batch <= 256:
        ap.error("--max-batch must be 1–256")
    return args


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available to this PyTorch")
    return device


def entries_for(args: argparse.Namespace) -> list[ModelEntry]:
    """What the hello lists: the version is known before any weights are read or generated."""
    if args.model_dir is not None:
        manifest = Manifest.read(args.model_dir)
        return [ModelEntry(manifest.model, manifest.version, lambda device: load_model(args.model_dir, device)[1])]
    if args.model != "reference":
        raise SystemExit(f"--model {args.model}: the built-in models are: reference (or pass --model-dir)")
    from .reference.generate import MODEL, ensure, version_of

    def loader(device: torch.device):
        directory = ensure(args.cache_dir, args.model_size, _log)
        return load_model(directory, device)[1]

    return [ModelEntry(MODEL, version_of(args.model_size), loader)]


def _read(stdin: BinaryIO, inbox: "queue.Queue[Any]") -> None:
    for item in read_messages(stdin, TO_RUNNER):
        if isinstance(item, ProtocolError):
            _log(f"protocol error from the agent ({item.stage}): {item}")
            if item.fatal:
                break  # an unframeable stdin cannot be trusted to carry a shutdown
            continue
        inbox.put(item)
    inbox.put(STOP)


def main(argv: list[str] | None = None) -> int:
    # stdout carries frames only: keep its buffer for them and send print() to stderr.
    frames_out = sys.stdout.buffer
    sys.stdout = sys.stderr
    args = parse_args(argv)
    device = pick_device(args.device)
    decode_device = device if args.decode_device == "same" else pick_device(args.decode_device)
    entries = entries_for(args)
    writer = FrameWriter(frames_out)
    runner = Runner(
        writer.send,
        entries,
        runner="torch",
        version=f"{__version__}+torch{torch.__version__}"[:64],
        max_batch=args.max_batch,
        device=device,
        decode_device=decode_device,
        log=_log,
    )
    inbox: "queue.Queue[Any]" = queue.Queue()
    writer.on_broken = lambda err: (_log(f"stdout failed: {err}; stopping"), inbox.put(STOP))
    writer.send(runner.hello())
    threading.Thread(target=_read, args=(sys.stdin.buffer, inbox), name="stdin", daemon=True).start()
    _log(f"serving {', '.join(f'{e.model}@{e.version}' for e in entries)} on {device} (decode on {decode_device}), max_batch {args.max_batch}")
    # Warm the model now (generating its weights on first use): the hello is out, so the agent
    # is not kept waiting; jobs that arrive meanwhile queue up in the inbox.
    for entry in entries:
        try:
            runner.ensure_loaded(entry)
        except Exception as err:  # noqa: BLE001 - reported per job / per load later
            _log(f"could not load {entry.model}@{entry.version}: {err}")
    runner.serve(inbox)
    runner.join()
    _log("stats " + json.dumps(runner.stats.summary(device)))
    try:
        frames_out.flush()
    except OSError:
        pass
    sys.stderr.flush()
    # The stdin thread may still block in read(); exit without waiting for it.
    os._exit(0)


if __name__ == "__main__":
    main()
