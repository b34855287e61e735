"""`scrd predict --dicom-out`: the heat map of a DICOM input as a DICOM Secondary Capture in the source's
study (new series), read back with pydicom and, where Debian's dicom3tools is installed, validated by
its `dciodvfy`."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from dicom_writer import write_dicom

from scrd.cli import main

pydicom = pytest.importorskip("pydicom")
DCIODVFY = shutil.which("dciodvfy")


def _source(path: Path, study: str, series: str, seed: int, frames: int = 1, patient: str = "P7") -> Path:
    """A CT-like DICOM of 72 rows x 80 columns in the given study and series (the test writer sets
    neither, nor a patient name: they are added here)."""
    rng = np.random.default_rng(seed)
    shape = (frames, 72, 80) if frames > 1 else (72, 80)
    write_dicom(path, (rng.random(shape) * 4000).astype(np.uint16), center=2000, width=4000, patient_id=patient)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.StudyDate, ds.AccessionNumber, ds.InstanceNumber = "Doe^Jane", "20260102", "A17", seed
    ds.save_as(path)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("dicom")
    study, series = generate_uid(), generate_uid()
    return [_source(folder / f"IM{i}.dcm", study, series, i + 1) for i in range(2)]


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "predictions.csv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def test_predict_writes_a_secondary_capture_in_the_sources_study(tiny_run, sources, tmp_path, capsys):
    out, dicom_out = tmp_path / "pred", tmp_path / "dicom"
    args = ["predict", *map(str, sources), "--model", str(tiny_run), "--out", str(out), "--dicom-out", str(dicom_out)]
    assert main(args) == 0
    assert f"wrote 2 DICOM heat maps (Secondary Capture, new series) to {dicom_out}" in capsys.readouterr().out
    rows = _rows(out)
    meta = json.loads((tiny_run / "model.json").read_text())
    written = {}
    for source in sources:
        row = rows[str(source)]
        ours, theirs = pydicom.dcmread(row["dicom"]), pydicom.dcmread(source)
        written[source] = ours
        assert Path(row["dicom"]).parent == dicom_out
        assert ours.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
        assert ours.StudyInstanceUID == theirs.StudyInstanceUID
        assert ours.SeriesInstanceUID != theirs.SeriesInstanceUID and ours.SOPInstanceUID != theirs.SOPInstanceUID
        assert (ours.PatientID, str(ours.PatientName), ours.AccessionNumber) == ("P7", "Doe^Jane", "A17")
        assert ours.SeriesDescription == "scrd anomaly heat map" and list(ours.ImageType) == ["DERIVED", "SECONDARY"]
        assert (ours.Rows, ours.Columns) == (72, 80)  # the source's own size, not the model's 64 px
        assert (ours.SamplesPerPixel, ours.PhotometricInterpretation, ours.BitsAllocated) == (3, "RGB", 8)
        assert ours.pixel_array.shape == (72, 80, 3) and ours.pixel_array.std() > 1
        for sequence in ("SourceImageSequence", "ReferencedImageSequence"):
            reference = ours[sequence][0]
            assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == (
                theirs.SOPClassUID,
                theirs.SOPInstanceUID,
            )
        assert ours.ReferencedSeriesSequence[0].SeriesInstanceUID == theirs.SeriesInstanceUID
        assert ours.InstanceNumber == theirs.InstanceNumber
        comment = ours.ImageComments
        assert f"scrd anomaly score {float(row['score']):.6g}" in comment
        assert (
            row["decision"].upper() in comment.upper()
            and f"threshold {meta['calibration']['threshold']:.4g}" in comment
        )
        assert f"{row['normal_percentile']}th percentile of 4 held-out normal images" in comment
    # one source series, one model: one new series for both heat maps
    assert written[sources[0]].SeriesInstanceUID == written[sources[1]].SeriesInstanceUID


def test_non_dicom_inputs_get_none_with_a_line_or_an_error(tiny_run, sources, phantom_data, tmp_path, capsys):
    png = phantom_data / "images" / "test_normal_0000.png"
    out, dicom_out = tmp_path / "pred", tmp_path / "dicom"
    common = ["--model", str(tiny_run), "--dicom-out", str(dicom_out), "--no-heatmaps"]
    assert main(["predict", str(png), str(sources[0]), "--out", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert "--dicom-out: 1 inputs are not DICOM: no DICOM heat map for them (no study to join)" in printed
    rows = _rows(out)
    assert rows[str(png)]["dicom"] == "" and Path(rows[str(sources[0])]["dicom"]).is_file()
    assert len(list(dicom_out.iterdir())) == 1

    assert main(["predict", str(png), "--out", str(tmp_path / "pngs"), *common]) == 2
    assert "none of the 1 inputs is DICOM" in capsys.readouterr().err


def test_each_frame_of_a_multi_frame_source_refers_to_its_frame(tiny_run, copy_run, tmp_path):
    from pydicom.uid import generate_uid

    run = copy_run(tiny_run)
    meta = json.loads((run / "model.json").read_text())
    meta["config"]["data"]["dicom_frames"] = "all"  # every frame is an image of its own
    (run / "model.json").write_text(json.dumps(meta))
    cine = _source(tmp_path / "cine.dcm", generate_uid(), generate_uid(), 5, frames=3)
    out = tmp_path / "pred"
    assert main(["predict", str(cine), "--model", str(run), "--out", str(out), "--dicom-out", str(tmp_path / "d")]) == 0
    rows = _rows(out)
    assert sorted(rows) == [f"{cine}#frame={k}" for k in range(3)]
    for k in range(3):
        ours = pydicom.dcmread(rows[f"{cine}#frame={k}"]["dicom"])
        assert ours.SourceImageSequence[0].ReferencedFrameNumber == k + 1 and (ours.Rows, ours.Columns) == (72, 80)


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not found (Debian: apt-get install dicom3tools)")
def test_dciodvfy_finds_no_error(tiny_run, sources, tmp_path):
    out, dicom_out = tmp_path / "pred", tmp_path / "dicom"
    args = ["predict", str(sources[0]), "--model", str(tiny_run), "--out", str(out), "--dicom-out", str(dicom_out)]
    assert main([*args, "--no-heatmaps"]) == 0
    written = next(dicom_out.iterdir())
    result = subprocess.run([DCIODVFY, str(written)], capture_output=True, text=True, timeout=60)
    report = result.stdout + result.stderr
    assert "SCImage" in report  # it recognised a Secondary Capture
    assert not re.findall(r"^Error.*$", report, re.M), report
