"""tools/compare_runs.py: two run folders compared number by number."""

import pytest

from gd_jax import io
from tools import compare_runs


def folder(path, *, cost=0.123456789, seconds=1.0, extra=None):
    io.write_csv(path / "results.csv", [{"seed": 0, "cost": cost}, {"seed": 1, "cost": 0.5}])
    summary = {"best": {"cost": cost, "seconds_per_epoch": seconds}, "name": "digits"}
    io.write_json(path / "summary.json", {**summary, **(extra or {})})
    io.write_json(path / "widths" / "analysis_3.json", {"stage/key": str(seconds), "x": cost})
    return path


def test_the_same_numbers_agree_whatever_the_timings_and_stage_keys(tmp_path, capsys):
    a = folder(tmp_path / "a")
    b = folder(tmp_path / "b", seconds=9.0)
    assert compare_runs.main([str(a), str(b), "--digits=15"]) == 0
    out = capsys.readouterr().out
    assert "results.csv: 4 values, same to 15 digits" in out
    assert "widths/analysis_3.json: 1 values, same" in out  # its stage key is not compared


@pytest.mark.parametrize("digits, status", [(6, 0), (9, 1)])
def test_a_number_differs_only_past_the_digits_compared(tmp_path, capsys, digits, status):
    a = folder(tmp_path / "a")
    b = folder(tmp_path / "b", cost=0.123456700)  # the same to 7 significant digits
    assert compare_runs.main([str(a), str(b), f"--digits={digits}"]) == status
    if status:
        assert "[0].cost: '0.123456789' -> '0.1234567'" in capsys.readouterr().out


def test_new_entries_are_listed_but_are_not_differences(tmp_path, capsys):
    a = folder(tmp_path / "a")
    b = folder(tmp_path / "b", extra={"epoch_path": "delayed"})
    assert compare_runs.main([str(a), str(b)]) == 0
    assert "only in one: epoch_path" in capsys.readouterr().out


def test_agreement_of_special_values():
    assert compare_runs.agree(float("nan"), "nan", 6)
    assert not compare_runs.agree(float("nan"), 1.0, 6)
    assert compare_runs.agree(float("inf"), float("inf"), 6)
    assert not compare_runs.agree("minimum", "saddle", 6)
    assert compare_runs.agree(None, None, 6) and not compare_runs.agree(None, 0.0, 6)
    assert compare_runs.agree(1.0000001, 1.0000002, 6) and not compare_runs.agree(1.0, 1.1, 6)
