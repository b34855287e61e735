"""The error model: a problem the user can fix prints one line naming it (exit 2); anything else is
a bug and keeps its traceback; --debug shows the traceback of every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrd import cli
from scrd.errors import InputError, ScrdError
from scrd.filenames import SKIPPED_FILE
from scrd.runs.runtime import Runtime


def test_a_user_error_is_one_line(tmp_path, capsys):
    assert (
        cli.main(
            ["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(tmp_path), "--out", str(tmp_path / "out")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err == f"scrd evaluate: error: {tmp_path / 'nothing'}: no trained model here "
        "(expected a run directory or a model.pt file)\n"
    )


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    assert (
        cli.main(
            [
                "--debug",
                "evaluate",
                "--model",
                str(tmp_path / "nothing"),
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "CheckpointError" in err


def test_a_bug_is_not_swallowed(monkeypatch):
    import scrd.model

    def broken(model):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(scrd.model, "parameter_counts", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.main(["params", "--arch", "resnet18"])


def test_every_error_class_is_a_scrd_error():
    import scrd.errors as errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) >= 10 and all(issubclass(c, ScrdError) for c in classes)


def test_all_images_unreadable_points_at_a_list_that_exists(tiny_run, tmp_path):
    from scrd.evaluation.evaluate import evaluate

    data = tmp_path / "data"
    for label in ("normal", "abnormal"):
        (data / "test" / label).mkdir(parents=True)
        (data / "test" / label / "x.png").write_bytes(b"broken")
    with pytest.raises(InputError, match="every image was unreadable and skipped; see") as info:
        evaluate(tiny_run, data, tmp_path / "out", runtime=Runtime(on_bad_image="skip"))
    listed = Path(str(info.value).rsplit("see ", 1)[1])
    assert listed == tmp_path / "out" / SKIPPED_FILE and listed.is_file()
