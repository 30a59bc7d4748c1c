"""Every entry point's --help lists every flag it reads, each default as its config
field has it (a default is written once), and library errors point at their flag."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from gd_jax.cli import common, local_minima, lr_sweep, toy_descent
from gd_jax.cli import train as train_cli
from gd_jax.config import TrainConfig
from gd_jax.studies.lr.config import LrConfig
from gd_jax.studies.minima.config import MinimaConfig

FLAGS = flags.FLAGS

# Each entry point, the configs whose fields are its flags, and an argument list that
# reads every flag and then stops at once (a data folder that does not exist).
ENTRIES = {
    "train": (train_cli, (TrainConfig,), ("--dataset=idx:/nonexistent",)),
    "lr_sweep": (lr_sweep, (TrainConfig, LrConfig), ("--dataset=idx:/nonexistent",)),
    "local_minima": (
        local_minima,
        (TrainConfig, MinimaConfig),
        ("--dataset=idx:/nonexistent",),
    ),
    "toy_descent": (toy_descent, (), ("--workdir=/dev/null",)),
}
SKIPPED = {"lr_sweep": {"learning_rate"}}  # the study sweeps --learning_rates instead


def listed_flags(entry: str) -> dict[str, str | None]:
    """The flags ``python -m experiments.<entry> --help`` lists, with their defaults."""
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{entry}", "--help"],
        capture_output=True,
        text=True,
        check=False,  # absl's --help exits with status 1
        timeout=120,
    )
    assert "\nflags:\n" in done.stdout, done.stderr[-2000:]
    text = done.stdout.split("Try --helpfull")[0]
    blocks = re.split(r"\n  --(?:\[no\])?(\w+):", "\n" + text.split("\nflags:\n", 1)[1])
    found = {}
    for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
        default = re.search(r"\(default: '([^']*)'\)", " ".join(body.split()))
        found[name] = default[1] if default else None
    return found


def flag_text(field: dataclasses.Field) -> str | None:
    """A field's default as --help prints it."""
    value = field.default
    if field.metadata["show"] is not None:
        return field.metadata["show"](value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flags_read(entry, args) -> set[str]:
    """The names of the flags ``entry.main`` reads when run with ``args``."""
    read = set()
    getattr_, getitem = flags.FlagValues.__getattr__, flags.FlagValues.__getitem__

    def record_attr(self, name):
        read.add(name)
        return getattr_(self, name)

    def record_item(self, name):
        read.add(name)
        return getitem(self, name)

    with flagsaver.flagsaver():
        argv = FLAGS([entry.__name__, "--workdir=/dev/null/x", *args])
        flags.FlagValues.__getattr__ = record_attr
        flags.FlagValues.__getitem__ = record_item
        try:
            status = entry.main(argv)
        finally:
            flags.FlagValues.__getattr__ = getattr_
            flags.FlagValues.__getitem__ = getitem
    assert status == 2  # it stopped at the data, after reading its flags
    return read


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_help_lists_every_flag_read_with_its_field_default(entry):
    module, configs, args = ENTRIES[entry]
    listed = listed_flags(entry)
    read = flags_read(module, args)
    assert read, "no flag was read"
    assert read <= listed.keys(), sorted(read - listed.keys())
    assert "workdir" in listed
    fields = [
        f for config in configs for f in dataclasses.fields(config)
        if f.name not in SKIPPED.get(entry, set())
    ]  # fmt: skip
    for field in fields:
        assert field.name in listed, field.name
        assert listed[field.name] == flag_text(field), field.name
    # Nothing is listed that the entry point does not use.
    assert listed.keys() <= read | {f.name for f in fields}, sorted(listed.keys() - read)


def test_the_console_command_is_the_checkout_command():
    # Installed, ``gd-jax-<entry>`` runs gd_jax.cli.<entry>; from a checkout ``python -m
    # experiments.<entry>`` runs the same: the same --help, usage text first. (Every
    # command starts through one ``common.launch``; the wheel's test checks them all.)
    entry = "lr_sweep"
    script = Path(sys.executable).parent / f"gd-jax-{entry.replace('_', '-')}"
    if not script.exists():
        pytest.skip(f"{script.name} is not installed here (pip install -e . installs it)")
    helps = [
        subprocess.run([*command, "--help"], capture_output=True, text=True, check=False,
                       timeout=120).stdout
        for command in ([str(script)], [sys.executable, "-m", f"experiments.{entry}"])
    ]  # fmt: skip
    # absl heads the flags with the script's path, which is all that differs.
    helps = [re.sub(r"(?m)^/\S+:$", "SCRIPT:", text) for text in helps]
    assert helps[0] == helps[1] and "\nflags:\n" in helps[0]
    assert helps[0].lstrip().startswith(ENTRIES[entry][0].__doc__.strip().splitlines()[0])


def test_lr_sweep_does_not_take_a_single_learning_rate():
    listed = listed_flags("lr_sweep")
    assert "learning_rates" in listed and "learning_rate" not in listed
    done = subprocess.run(
        [sys.executable, "-m", "experiments.lr_sweep", "--learning_rate=-5", "--workdir=x"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0 and "learning_rate" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_config_takes_only_the_flags_given_and_keeps_its_defaults_otherwise():
    with flagsaver.flagsaver():
        FLAGS(["train", "--epochs=7", "--layers=30", "--workdir=x"])
        config = common.config_from_flags(TrainConfig)
    assert config == TrainConfig(epochs=7, layers=(30,))


def test_a_library_error_about_a_field_names_its_flag(tmp_path, capsys):
    from conftest import cli

    status = cli(train_cli, "--dataset=digits", "--validation_size=1347", f"--workdir={tmp_path}")
    assert status == 2
    err = capsys.readouterr().err
    assert "validation_size=1347" in err and "(set by --validation_size)" in err
    assert "Traceback" not in err


def test_a_flagfile_holds_a_long_study_command(tmp_path):
    """absl's own --flagfile: one flag per line, comments allowed, overridable after."""
    flagfile = tmp_path / "study.flags"
    flagfile.write_text(
        "# the seed's perceptron on the embedded digits\n"
        "--dataset=digits\n--layers=8\n--epochs=2\n--learning_rate=0.5\n"
    )
    from conftest import cli

    workdir = tmp_path / "run"
    assert cli(train_cli, f"--flagfile={flagfile}", "--epochs=3", f"--workdir={workdir}") == 0
    flags_written = json.loads((workdir / "config.json").read_text())["flags"]
    assert flags_written["layers"] == [8] and flags_written["learning_rate"] == 0.5
    assert flags_written["epochs"] == 3  # the command line after the file wins
