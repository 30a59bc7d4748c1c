"""The run folder's files: atomic writes, checkpoints, and who may write where."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gd_jax import io, model, optim, train
from gd_jax.errors import GdJaxError


def state(seed=0, name="adam"):
    tx = optim.make(name, 0.01)
    return train.init_state(model.init_params(jax.random.key(seed), (5, 3, 2)), tx)


def test_checkpoint_round_trips_params_and_optimizer_state(tmp_path):
    original = state()
    # Make the optimiser state non-trivial: one Adam step.
    tx = optim.make("adam", 0.01)
    grads = jax.tree.map(jnp.ones_like, original.params)
    _, opt_state = tx.update(grads, original.opt_state, original.params)
    original = original._replace(opt_state=opt_state, step=jnp.int32(7))
    io.save_checkpoint(tmp_path / "c.npz", original, epoch=3)
    restored, meta = io.load_checkpoint(tmp_path / "c.npz", like=state(seed=1))
    assert meta == {"epoch": 3}
    assert jax.tree.structure(restored) == jax.tree.structure(original)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(original), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    with np.load(tmp_path / "c.npz") as f:
        assert ".params[0][0]" in f.files  # keyed by pytree path


def test_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    io.save_checkpoint(tmp_path / "c.npz", state())
    other = train.init_state(model.init_params(jax.random.key(0), (5, 4, 2)), optim.make("adam", 1))
    with pytest.raises(GdJaxError, match=r"does not match this run.*\.params\[0\]\[0\]"):
        io.load_checkpoint(tmp_path / "c.npz", like=other)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(GdJaxError, match="cannot be read"):
        io.load_checkpoint(tmp_path / "bad.npz", like=other)


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "summary.json"
    io.write_json(path, {"a": 1})

    class Boom(Exception):
        pass

    with pytest.raises(Boom), io._atomic(path) as f:
        f.write(b'{"a": ')
        raise Boom
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left


def test_json_lines_and_csv(tmp_path):
    records = [{"epoch": 0, "cost": None}, {"epoch": 1, "cost": 0.5, "seconds": 1.0}]
    io.write_jsonl(tmp_path / "m.jsonl", records)
    assert io.read_jsonl(tmp_path / "m.jsonl") == records
    io.write_csv(tmp_path / "m.csv", records)
    assert (tmp_path / "m.csv").read_text().splitlines() == [
        "epoch,cost,seconds",
        "0,,",
        "1,0.5,1.0",
    ]
    with pytest.raises(ValueError):
        io.write_json(tmp_path / "x.json", {"cost": float("nan")})  # never invalid JSON


def test_non_finite_floats_become_null_so_json_can_hold_them(tmp_path):
    value = {"costs": [1.0, float("inf"), float("nan")], "rise": -np.inf, "n": 3, "s": "x"}
    found = io.finite(value)
    assert found == {"costs": [1.0, None, None], "rise": None, "n": 3, "s": "x"}
    io.write_json(tmp_path / "a.json", found)  # would refuse the infinities
    assert io.read_json(tmp_path / "a.json") == found
