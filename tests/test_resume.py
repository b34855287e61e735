"""Resume is explicit and correct: a finished run is left as it is, more iterations extend it,
changed options and other data are refused, and the logs are cut back to the checkpoint."""

from __future__ import annotations

import csv

import pytest
from helpers import tiny_config

from scrd.cli import main
from scrd.data.phantom import make_phantom_dataset
from scrd.errors import ResumeError
from scrd.filenames import EVAL_LOG, MODEL_FILE, MODEL_META, STATE_META, TRAIN_LOG
from scrd.storage import read_json
from scrd.training import loop as train_loop
from scrd.training import train as training


def _iterations(path):
    with open(path) as f:
        return [int(r["iteration"]) for r in csv.DictReader(f)]


def test_resuming_a_finished_run_keeps_it_byte_for_byte(tiny_run, phantom_data, copy_run, capsys):
    run = copy_run(tiny_run)
    before = {name: (run / name).read_bytes() for name in (MODEL_META, MODEL_FILE, TRAIN_LOG)}
    assert "calibration" in read_json(run / MODEL_META)
    assert main(["train", "--data", str(phantom_data), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "already trained for 6 iterations; nothing to do" in capsys.readouterr().out
    assert {name: (run / name).read_bytes() for name in before} == before


def test_more_iterations_extend_a_finished_run(tiny_run, phantom_data, copy_run, capsys):
    run = copy_run(tiny_run)
    assert (
        main(
            ["train", "--data", str(phantom_data), "--out", str(run), "--resume", "--iterations", "8", "--no-progress"]
        )
        == 0
    )
    meta = read_json(run / MODEL_META)
    assert meta["iterations"] == 8 and meta["config"]["train"]["iterations"] == 8
    assert "calibration" not in meta  # calibrated for the old weights
    assert _iterations(run / TRAIN_LOG) == [2, 4, 6, 8]


def test_resume_with_config_flags_names_them(tiny_run, phantom_data, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(phantom_data),
                "--out",
                str(tiny_run),
                "--resume",
                "--arch",
                "resnet18",
                "--set",
                "loss.eps=1",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "drop --arch, --set (only --iterations may extend a run)" in err and err.count("\n") == 1


def test_resume_on_other_data_is_refused_naming_both(tiny_run, phantom_data, copy_run, tmp_path):
    run = copy_run(tiny_run)
    other = make_phantom_dataset(tmp_path / "other", n_train=17, n_test_normal=1, n_test_abnormal=1, size=64, seed=9)
    with pytest.raises(ResumeError, match=rf"trained on '{phantom_data}'.*but --data '{other}' has other images"):
        training.resume(run, other, iterations=8, progress=False)


def test_logs_are_cut_back_to_the_checkpoint_after_a_kill(phantom_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(train__eval_every=2, train__checkpoint_every=4, train__log_every=1)
    real_save = training.save_state

    def killed_after_iteration_6(run_dir, model, optimizer, synth, it, *rest):
        if it == 6:  # the process dies after iteration 6 was logged and evaluated, before its checkpoint
            raise KeyboardInterrupt
        real_save(run_dir, model, optimizer, synth, it, *rest)

    monkeypatch.setattr(training, "save_state", killed_after_iteration_6)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, phantom_data, run, progress=False, eval_source=phantom_data)
    assert read_json(run / STATE_META)["iteration"] == 4
    assert _iterations(run / TRAIN_LOG) == [1, 2, 3, 4, 5, 6] and _iterations(run / EVAL_LOG) == [2, 4, 6]

    monkeypatch.setattr(training, "save_state", real_save)
    training.resume(run, phantom_data, progress=False, eval_source=phantom_data)
    assert _iterations(run / TRAIN_LOG) == [1, 2, 3, 4, 5, 6] and _iterations(run / EVAL_LOG) == [2, 4, 6]
    assert read_json(run / MODEL_META)["iterations"] == 6


def test_resume_without_a_run_is_an_error(phantom_data, tmp_path, capsys):
    args = ["train", "--data", str(phantom_data), "--out", str(tmp_path / "none"), "--resume", "--no-progress"]
    assert main(args) == 2
    assert "nothing to resume (no config.yaml); start it without --resume" in capsys.readouterr().err


def test_a_resume_that_restarts_from_zero_says_so(phantom_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_after = train_loop.after_step

    def killed_at_3(it, *args):
        if it == 3:
            raise KeyboardInterrupt
        real_after(it, *args)

    monkeypatch.setattr(train_loop, "after_step", killed_at_3)
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny_config(), phantom_data, run, progress=False)
    monkeypatch.setattr(train_loop, "after_step", real_after)
    with pytest.warns(
        UserWarning,
        match=r"no checkpoint was written.*checkpoint_every = 500\); training starts "
        r"again from iteration 0",
    ):
        training.resume(run, phantom_data, progress=False)
    assert read_json(run / MODEL_META)["iterations"] == 6
