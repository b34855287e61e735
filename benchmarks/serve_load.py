"""Throughput and latency of ``scrd serve`` under concurrent clients, on loopback.

Starts ``scrd serve`` in a child process (as a deployment runs it), sends N requests of one image
each from C concurrent clients (and the same N from a single client, for comparison), and prints
images/s, p50 and p95 latency and the mean batch the server formed. Every answer must be 200; the
script stops by itself. Without ``--model``, an untrained detector (random weights: speed, not
accuracy, is measured) of ``--arch`` at ``--image-size`` is saved first.

    python benchmarks/serve_load.py --arch mobilenet_v2 --image-size 256 --requests 200 --clients 8
"""

from __future__ import annotations

import argparse
import http.client
import io
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scrd.config import preset
from scrd.data.phantom import phantom_slice
from scrd.detector import Detector
from scrd.model import SCRD


def untrained_model(folder: Path, arch: str, size: int, batch: int) -> Path:
    overrides = {"model.arch": arch, "model.weights": "none", "model.image_size": size, "train.batch_size": batch}
    config = preset("official").with_overrides(overrides)
    Detector(SCRD(arch).eval(), config, torch.device("cpu")).save(folder)
    return folder


def images(count: int, size: int) -> list[bytes]:
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        pixels = phantom_slice(np.random.default_rng(i), size, lesion=i % 2 == 1)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def post(port: int, name: str, data: bytes, query: str) -> tuple[int, float, bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request(
            "POST", "/score" + query, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        response = connection.getresponse()
        answer = response.read()
        return response.status, time.perf_counter() - started, answer
    finally:
        connection.close()


def health(port: int) -> dict:
    import json

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def load(port: int, pngs: list[bytes], requests: int, clients: int, query: str) -> dict:
    before = health(port)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda i: post(port, f"img{i}.png", pngs[i % len(pngs)], query), range(requests)))
    seconds = time.perf_counter() - started
    after = health(port)
    bad = [status for status, _, _ in answers if status != 200]
    if bad:
        raise SystemExit(f"{len(bad)} of {requests} requests failed: {sorted(set(bad))}")
    latency = sorted(t for _, t, _ in answers)
    batches = after["batches"] - before["batches"]
    return {
        "images_per_s": requests / seconds,
        "p50_ms": 1000 * latency[len(latency) // 2],
        "p95_ms": 1000 * latency[math.ceil(0.95 * len(latency)) - 1],
        "mean_batch": (after["images"] - before["images"]) / max(batches, 1),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a run directory (default: an untrained detector of --arch)")
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="the server's largest batch")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--heatmap", action="store_true", help="ask for the panel too (?heatmap=1)")
    args = parser.parse_args()
    query = "?heatmap=1" if args.heatmap else ""
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else untrained_model(Path(tmp) / "model", args.arch, args.image_size, 8)
        size = Detector.load(model, "cpu").image_size
        command = [sys.executable, "-m", "scrd", "serve", str(model), "--port", "0", "--device", "cpu"]
        command += ["--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms)]
        command += ["--queue", str(4 * args.clients * args.batch_size)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = server.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if not match:
                raise SystemExit(f"scrd serve did not start: {line}")
            port = int(match.group(1))
            pngs = images(16, size)
            print(
                f"{platform.node()}: {os.cpu_count()} CPU cores, torch {torch.__version__} "
                f"({torch.get_num_threads()} threads), server: {line.strip()}"
            )
            for _ in range(3):  # warm-up
                post(port, "warm.png", pngs[0], query)
            for clients in (1, args.clients):
                r = load(port, pngs, args.requests, clients, query)
                print(
                    f"{args.requests} requests of 1 image, {clients} client(s){' with heat maps' if query else ''}: "
                    f"{r['images_per_s']:.1f} images/s, latency p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
                    f"mean batch {r['mean_batch']:.2f} ({r['seconds']:.1f} s)"
                )
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
