"""The one cache of a study's results: kept when whole and of these inputs, computed
again otherwise, and never read by anyone but the stage."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gd_jax import stage
from gd_jax.run_folder import RunFolder


@dataclasses.dataclass(frozen=True)
class Square:
    values: np.ndarray
    power: int = 2
    calls: list = dataclasses.field(default_factory=list, compare=False)


def power(inputs: Square) -> dict:
    inputs.calls.append(1)
    return {"out": inputs.values**inputs.power}


KNOWN_KEY = "93420a23e51e10bb9cd6"
ARRAYS = stage.Stage("parts/square", power, stage.arrays(lambda v: v, lambda a: a))
JSON = stage.Stage(
    "square",
    lambda i: [float(v) for v in power(i)["out"]],
    stage.as_json(),
)


def test_a_stage_is_computed_once_and_then_read_back(tmp_path):
    folder, inputs = RunFolder(tmp_path), Square(np.arange(4.0))
    first = stage.run(folder, ARRAYS, inputs)
    again = stage.run(folder, ARRAYS, inputs)
    assert first["out"].tolist() == again["out"].tolist() == [0, 1, 4, 9]
    assert len(inputs.calls) == 1
    assert (tmp_path / "parts" / "square.npz").exists()
    assert stage.run(folder, JSON, inputs) == stage.run(folder, JSON, inputs) == [0, 1, 4, 9]
    assert len(inputs.calls) == 2


def test_other_inputs_are_computed_again_and_replace_the_file(tmp_path, caplog):
    folder, calls = RunFolder(tmp_path), []
    stage.run(folder, ARRAYS, Square(np.arange(3.0), calls=calls))
    cubed = stage.run(folder, ARRAYS, Square(np.arange(3.0), power=3, calls=calls))
    assert cubed["out"].tolist() == [0, 1, 8] and len(calls) == 2
    assert "computed from other inputs" in caplog.text
    # Fields that do not decide the output do not make it another result.
    stage.run(folder, ARRAYS, Square(np.arange(3.0), power=3, calls=[]))
    assert len(calls) == 2


@pytest.mark.parametrize("cut", [lambda b: b[:40], lambda b: b"", lambda b: b[: len(b) // 2]])
@pytest.mark.parametrize("which", [ARRAYS, JSON], ids=["npz", "json"])
def test_a_damaged_file_is_logged_and_computed_again(tmp_path, caplog, cut, which):
    folder, inputs = RunFolder(tmp_path), Square(np.arange(5.0))
    expected = stage.run(folder, which, inputs)
    path = which.path(folder)
    path.write_bytes(cut(path.read_bytes()))
    found = stage.run(folder, which, inputs)
    assert f"{path} is damaged" in caplog.text
    assert len(inputs.calls) == 2
    assert str(found) == str(expected)
    assert stage.stored(folder, which, inputs) is not None  # and the file is whole again


@pytest.mark.parametrize("which", [ARRAYS, JSON], ids=["npz", "json"])
def test_a_file_without_a_key_is_computed_again_and_said_so(tmp_path, caplog, which):
    folder, inputs = RunFolder(tmp_path), Square(np.arange(3.0))
    path = which.path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    if which is ARRAYS:
        np.savez(path, out=np.arange(3.0))  # the same numbers, but no key
    else:
        path.write_text("[0.0, 1.0, 4.0]")
    stage.run(folder, which, inputs)
    assert "holds no stage key" in caplog.text and len(inputs.calls) == 1
    assert stage.stored(folder, which, inputs) is not None


def test_the_key_is_stable_and_sees_every_deciding_field():
    a = Square(np.arange(3.0))
    assert stage.key_of(a) == stage.key_of(Square(np.arange(3.0), calls=[1, 2]))
    assert stage.key_of(a) != stage.key_of(Square(np.arange(3.0), power=3))
    assert stage.key_of(a) != stage.key_of(Square(np.arange(3.0, dtype=np.float32)))
    assert stage.key_of(a) != stage.key_of(Square(np.arange(4.0)[:3].reshape(3, 1)))
    assert stage.key_of({"x": 0.1}) != stage.key_of({"x": float(np.nextafter(0.1, 1.0))})
    # Known answer, fixed here: a key that changed between versions would make every
    # run folder recompute what it had already stored.
    assert stage.key_of(Square(np.zeros(2))) == KNOWN_KEY


def test_inputs_without_a_stable_hash_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Opaque:
        thing: object

    with pytest.raises(TypeError, match="compare=False"):
        stage.key_of(Opaque(object()))


def test_a_stage_by_item_keeps_each_item_and_goes_on_from_the_last(tmp_path):
    folder = RunFolder(tmp_path)

    def squares(inputs: Square, progress: stage.Progress) -> dict:
        out = []
        for i, v in enumerate(inputs.values):
            kept = progress.get(i)
            if kept is None:
                if inputs.power == 2 and inputs.calls == [0, 1]:
                    raise KeyboardInterrupt  # killed at the third item
                inputs.calls.append(i)
                kept = {"v": np.asarray(v**inputs.power)}
                progress.keep(i, kept)
            out.append(float(kept["v"]))
        return {"out": np.asarray(out)}

    by_item = stage.Stage("parts/squares", squares, ARRAYS.codec, by_item=True)
    inputs = Square(np.arange(4.0))
    with pytest.raises(KeyboardInterrupt):
        stage.run(folder, by_item, inputs)
    partial = tmp_path / "parts" / "squares.partial.npz"
    assert partial.exists() and inputs.calls == [0, 1]
    inputs.calls.append("resumed")  # the kill no longer fires
    assert stage.run(folder, by_item, inputs)["out"].tolist() == [0, 1, 4, 9]
    assert inputs.calls == [0, 1, "resumed", 2, 3]  # items 0 and 1 were not done again
    assert not partial.exists()  # once the stage's own file is written
    # Items kept for other inputs are not used: cubes are all computed.
    cubes = Square(np.arange(3.0), power=3)
    Path(partial).parent.mkdir(exist_ok=True)
    stage.Progress(partial, stage.key_of(inputs)).keep(0, {"v": np.asarray(99.0)})
    assert stage.run(folder, by_item, cubes)["out"].tolist() == [0, 1, 8]
    assert cubes.calls == [0, 1, 2]
