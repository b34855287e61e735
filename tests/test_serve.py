"""`scrd serve`: a real uvicorn server on a free loopback port, a tiny trained model, and its answers
checked against `scrd predict` on the same files; bad uploads, a bounded load, a full queue."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="scrd serve needs pip install 'scrd[serve]'")
pytest.importorskip("uvicorn", reason="scrd serve needs pip install 'scrd[serve]'")
pytest.importorskip("multipart", reason="scrd serve needs pip install 'scrd[serve]'")

from dicom_writer import write_dicom  # noqa: E402
from serving import png_bytes, post_files, request, running  # noqa: E402

from scrd.cli import main  # noqa: E402
from scrd.serve.app import create_app  # noqa: E402
from scrd.serve.batcher import MicroBatcher, QueueFull  # noqa: E402
from scrd.serve.run import build_service  # noqa: E402
from scrd.serve.service import ServeSettings  # noqa: E402

MAX_PIXELS = 100 * 100  # the served copy's data.max_image_pixels: the 64-px phantoms fit, 128 px does not
MAX_BYTES = 40_000


@pytest.fixture(scope="module")
def served_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run whose config allows at most MAX_PIXELS pixels per image."""
    run = tmp_path_factory.mktemp("served") / "run"
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "model.json").read_text())
    meta["config"]["data"]["max_image_pixels"] = MAX_PIXELS
    (run / "model.json").write_text(json.dumps(meta))
    return run


@pytest.fixture(scope="module")
def server(served_run):
    settings = ServeSettings(max_batch=4, max_wait_ms=20, queue=64, max_bytes=MAX_BYTES, max_files=8)
    service = build_service(served_run, "cpu", "fp32", settings)
    with running(create_app(service)) as url:
        yield url


def _images(phantom_data: Path) -> list[Path]:
    return sorted((phantom_data / "images").glob("test_*.png"))


def _dicom(path: Path, size: int = 64, frames: int = 1, seed: int = 0) -> Path:
    import pydicom
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    shape = (frames, size, size) if frames > 1 else (size, size)
    write_dicom(path, (rng.random(shape) * 4000).astype(np.uint16), center=2000, width=4000, patient_id="P7")
    ds = pydicom.dcmread(path)  # the test writer leaves the study and series out: add them
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientName = generate_uid(), generate_uid(), "Doe^Jane"
    ds.save_as(path)
    return path


def _predictions(run: Path, inputs: list[Path], out: Path) -> dict[str, dict]:
    args = ["predict", *map(str, inputs), "--model", str(run), "--out", str(out), "--precision", "fp32"]
    assert main([*args, "--device", "cpu", "--no-heatmaps"]) == 0
    with open(out / "predictions.csv", newline="") as f:
        return {Path(row["path"]).name: row for row in csv.DictReader(f)}


def test_scores_decisions_and_percentiles_equal_scrd_predict(server, served_run, phantom_data, tmp_path):
    images = _images(phantom_data)
    dicom = _dicom(tmp_path / "ct.dcm")
    expected = _predictions(served_run, [*images, dicom], tmp_path / "pred")
    info = json.loads((tmp_path / "pred" / "predict_info.json").read_text())
    answers = []
    for start in range(0, len(images), 3):  # requests of 3 files, and the DICOM alone
        status, _, body = post_files(server, [(p.name, p.read_bytes()) for p in images[start : start + 3]])
        assert status == 200, body
        answers += body["results"]
    status, _, body = post_files(server, [("ct.dcm", dicom.read_bytes())])
    answers += body["results"]
    assert [a["file"] for a in answers] == [p.name for p in images] + ["ct.dcm"]
    threshold = json.loads((served_run / "model.json").read_text())["calibration"]["threshold"]
    decisions = set()
    for answer in answers:
        row = expected[answer["file"]]
        assert answer["score"] == pytest.approx(float(row["score"]), rel=1e-6, abs=0)
        assert answer["decision"] == row["decision"] and answer["threshold"] == threshold
        assert f"{answer['normal_percentile']:.2f}" == row["normal_percentile"]
        assert answer["normal_images"] == 4  # the tiny run holds out 4 normal images
        assert answer["model_sha256"] == info["model_sha256"] == body["model_sha256"]
        decisions.add(answer["decision"])
    assert decisions <= {"normal", "abnormal"}


def test_heatmap_panel_is_predicts_panel(server, served_run, phantom_data, tmp_path):
    image = _images(phantom_data)[-1]
    status, _, body = post_files(server, [(image.name, image.read_bytes())], "heatmap=1")
    assert status == 200
    panel = Image.open(io.BytesIO(base64.b64decode(body["results"][0]["heatmap_png"])))
    out = tmp_path / "pred"
    assert main(["predict", str(image), "--model", str(served_run), "--out", str(out), "--device", "cpu"]) == 0
    written = Image.open(next((out / "panels").glob("*.png")))
    assert panel.size == written.size and panel.mode == written.mode
    assert "heatmap_png" not in post_files(server, [(image.name, image.read_bytes())])[2]["results"][0]


def test_dicom_heat_map_on_request(server, tmp_path):
    import pydicom

    source = _dicom(tmp_path / "ct.dcm", size=80)  # 6400 pixels: within MAX_PIXELS
    status, _, body = post_files(server, [("ct.dcm", source.read_bytes()), ("a.png", png_bytes())], "dicom=1")
    assert status == 200, body
    ours, png = body["results"]
    written = pydicom.dcmread(io.BytesIO(base64.b64decode(ours["dicom"])))
    original = pydicom.dcmread(source)
    assert written.StudyInstanceUID == original.StudyInstanceUID
    assert written.SeriesInstanceUID != original.SeriesInstanceUID
    assert (written.Rows, written.Columns, written.SamplesPerPixel) == (80, 80, 3)
    assert written.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert f"{ours['score']:.6g}" in written.ImageComments
    assert png["dicom"] is None and "not a DICOM" in png["dicom_note"]


def _truncated_png() -> bytes:
    return png_bytes()[:120]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_uploads_get_a_4xx_with_the_reason_and_the_service_carries_on(server, tmp_path):
    good = png_bytes(seed=3)
    status, _, body = post_files(server, [("good.png", good)])
    assert status == 200
    reference = body["results"][0]["score"]
    big_dicom = _dicom(tmp_path / "big.dcm", size=128).read_bytes()
    cine = _dicom(tmp_path / "cine.dcm", size=32, frames=3).read_bytes()
    cases = [
        ([("notes.png", b"these are notes, not pixels")], 415, "notes.png: not an image"),
        ([("empty.png", b"")], 400, "empty.png: file is empty"),
        ([("noise.png", png_bytes(size=256, noise=True))], 413, "noise.png: 6"),  # ~65 kB
        ([("noise.png", png_bytes(size=256, noise=True))], 413, "bytes, more than the service's --max-bytes (40,000)"),
        ([("large.png", png_bytes(size=128))], 413, "large.png: image is 128x128 = 16,384 pixels, more than data"),
        ([("big.dcm", big_dicom)], 413, "data.max_image_pixels"),
        ([("cine.dcm", cine)], 422, "cine.dcm: multi-frame DICOM (3 frames)"),
        ([("cut.png", _truncated_png())], 422, "cut.png"),
        ([("brain.nii.gz", b"\x1f\x8b" + bytes(100))], 415, "NIfTI volume"),
        ([("tiny.png", _png(Image.new("L", (4, 4), 10)))], 422, "tiny.png: image is 4x4 pixels; at least 8x8"),
        ([("good.png", good), ("notes.png", b"text")], 415, "notes.png"),  # one bad file refuses the request
        ([("a.png", good)] * 9, 413, "more than --max-files (8)"),
    ]
    for files, code, reason in cases:
        status, _, body = post_files(server, files)
        assert (status, reason in body["detail"]) == (code, True), (files[0][0], status, body)
        assert str(tmp_path) not in body["detail"] and "/tmp/" not in body["detail"]  # names the upload only
    status, _, body = request(server + "/score", "POST", b"x", {"Content-Type": "multipart/form-data; boundary=z"})
    assert status == 400
    status, _, body = request(server + "/score", "POST", bytes(9 * MAX_BYTES + 70_000), {"Content-Type": "text/plain"})
    assert status == 413 and "request body over" in body["detail"]
    status, _, body = post_files(server, [("good.png", good)])  # still serving, same answer
    assert status == 200 and body["results"][0]["score"] == reference
    status, _, health = request(server + "/health")
    assert status == 200 and health["alive"] and health["failed_batches"] == 0


def test_health_model_and_page(server, served_run):
    status, _, health = request(server + "/health")
    assert status == 200 and health["status"] == "ok" and health["capacity"] == 64
    status, _, model = request(server + "/model")
    meta = json.loads((served_run / "model.json").read_text())
    assert model["calibration"] == meta["calibration"] and model["provenance"] == meta["provenance"]
    assert model["config"] == meta["config"] and model["normal_scores"]["count"] == 4
    assert model["service"]["max_batch"] == 4 and model["threshold"] == meta["calibration"]["threshold"]
    status, headers, page = request(server + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'type="file"' in page and not re.search(rb"(src|href)=\"(https?:)?//", page)  # nothing external


def test_a_bounded_load_from_concurrent_clients(server, phantom_data):
    """64 requests from 8 clients: every one answered, each answer equal to the image's score alone."""
    images = _images(phantom_data)[:8]
    alone = {}
    for path in images:
        status, _, body = post_files(server, [(path.name, path.read_bytes())])
        alone[path.name] = body["results"][0]["score"]
    before = request(server + "/health")[2]

    def one(i: int):
        path = images[i % len(images)]
        started = time.perf_counter()
        status, _, body = post_files(server, [(path.name, path.read_bytes())])
        return path.name, status, body, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(64)))
    seconds = time.perf_counter() - started
    assert len(answers) == 64 and all(status == 200 for _, status, _, _ in answers)
    for name, _, body, _ in answers:
        assert body["results"][0]["score"] == pytest.approx(alone[name], rel=1e-6, abs=0)
    after = request(server + "/health")[2]
    assert after["images"] - before["images"] == 64
    assert after["largest_batch"] > 1  # concurrent requests were batched together
    latency = sorted(a[3] for a in answers)
    print(
        f"\n64 requests, 8 clients: {64 / seconds:.1f} images/s, p50 {1000 * latency[31]:.0f} ms, "
        f"p95 {1000 * latency[60]:.0f} ms, {after['batches'] - before['batches']} batches"
    )


def test_a_full_queue_answers_503_and_the_rest_are_served(served_run):
    settings = ServeSettings(max_batch=1, max_wait_ms=0, queue=2, max_bytes=MAX_BYTES, max_files=4)
    service = build_service(served_run, "cpu", "fp32", settings)
    gate, score = threading.Event(), service.batcher.run_batch

    def held(images):
        gate.wait(30)
        return score(images)

    service.batcher.run_batch = held
    good = [("a.png", png_bytes(seed=1))]
    with running(create_app(service)) as url, ThreadPoolExecutor(3) as pool:

        def until(scoring, queued):
            deadline = time.monotonic() + 30
            while (health := request(url + "/health")[2])["scoring"] != scoring or health["queued"] != queued:
                assert time.monotonic() < deadline, health
                time.sleep(0.02)

        first = pool.submit(post_files, url, good)
        until(1, 0)  # the worker holds the first image
        waiting = [pool.submit(post_files, url, good) for _ in range(2)]
        until(1, 2)  # the queue is full
        status, headers, body = post_files(url, good)
        assert status == 503 and headers["retry-after"] == "1" and "queue holds 2 of 2" in body["detail"]
        status, _, body = post_files(url, good * 3)  # more than the queue could ever take at once
        assert status == 503
        gate.set()
        assert [f.result(60)[0] for f in [first, *waiting]] == [200, 200, 200]
        assert request(url + "/health")[2]["rejected"] == 2


def test_batcher_batches_isolates_failures_and_is_bounded():
    seen = []

    def run(items):
        seen.append(len(items))
        if "poison" in items:
            raise ValueError("poisoned")
        return [f"ok {i}" for i in items]

    batcher = MicroBatcher(run, max_batch=3, max_wait_s=0.2, capacity=5).start()
    try:
        futures = batcher.submit(["a", "poison", "b"])  # one batch of 3 fails, then each is run alone
        assert futures[0].result(5) == "ok a" and futures[2].result(5) == "ok b"
        with pytest.raises(ValueError, match="poisoned"):
            futures[1].result(5)
        assert seen == [3, 1, 1, 1]
        with pytest.raises(QueueFull):
            batcher.submit(list("abcdef"))  # 6 never fit in 5: nothing of it is queued
        assert batcher.pending() == 0
        futures = batcher.submit(["c"])  # alone: waits max_wait_s for company, then runs
        assert futures[0].result(5) == "ok c" and seen[-1] == 1
        assert batcher.stats()["alive"]
    finally:
        batcher.stop()
    assert not batcher.alive


def test_missing_web_packages_name_the_extra(monkeypatch):
    from scrd.errors import ConfigError
    from scrd.serve.app import require_packages

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ConfigError, match=r"needs uvicorn.*pip install 'scrd\[serve\]'"):
        require_packages()


def test_the_command_serves_until_sigterm(served_run):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "scrd", "serve", str(served_run), "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/ ; batches of up to 4", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        url = match.group(1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(url + "/health")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        status, _, body = post_files(url, [("a.png", png_bytes())])
        assert status == 200 and body["results"][0]["decision"] in ("normal", "abnormal")
        proc.send_signal(signal.SIGTERM)  # a graceful shutdown, then uvicorn re-raises the signal
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "Finished server process" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_port_in_use(served_run, capsys):
    from scrd.serve.run import bind

    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        assert main(["serve", str(served_run), "--port", str(port), "--device", "cpu"]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        taken.close()
