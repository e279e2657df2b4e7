"""`run`'s --data, --env, --env-file, --secret and --shm-size values."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RunInputError
from builder.run import inputs


def test_data_mounts_read_only_unless_rw(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "d")
    ro, rw = inputs.data_mounts([f"train={link}", f"scratch={tmp_path}/d:rw"])
    assert (ro.name, ro.path, ro.mode, ro.inside) == (
        "train",
        str(tmp_path / "d"),
        "ro",
        "/data/train",
    )
    assert (rw.name, rw.mode, rw.inside) == ("scratch", "rw", "/data/scratch")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train", "--data 'train': give NAME=PATH"),
        ("=x", "--data '=x': give NAME=PATH"),
        ("a/b=x", "--data 'a/b=x': give NAME=PATH"),
        ("t=/surely/not/here", "--data t=/surely/not/here: /surely/not/here does not exist."),
    ],
)
def test_bad_data_values(text: str, message: str) -> None:
    with pytest.raises(RunInputError) as raised:
        inputs.data_mounts([text])
    assert str(raised.value).startswith(message)


def test_a_data_name_twice(tmp_path: Path) -> None:
    with pytest.raises(RunInputError, match=r"^--data t is given twice; give each NAME once\.$"):
        inputs.data_mounts([f"t={tmp_path}", f"t={tmp_path}"])


def test_environment_files_then_flags_and_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text('# comment\n\nLR=0.1\nWANDB_API_KEY=abc\n  FROM_HERE\nQUOTED="a b"\n')
    source = {"FROM_HERE": "here", "HF_TOKEN": "t0k", "PLAIN": "p"}
    environment = inputs.environment(
        ["LR=0.2", "HF_TOKEN", "PLAIN", "DB=pw"], [str(env_file)], ["DB"], source
    )
    assert environment.values == {
        "LR": "0.2",
        "WANDB_API_KEY": "abc",
        "FROM_HERE": "here",
        "QUOTED": '"a b"',
        "HF_TOKEN": "t0k",
        "PLAIN": "p",
        "DB": "pw",
    }
    assert environment.secrets == {"WANDB_API_KEY", "HF_TOKEN", "DB"}
    assert environment.recorded() == {
        "LR": "0.2",
        "WANDB_API_KEY": None,
        "FROM_HERE": "here",
        "QUOTED": '"a b"',
        "HF_TOKEN": None,
        "PLAIN": "p",
        "DB": None,
    }


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("NOT_SET", "--env NOT_SET: NOT_SET is not set in this environment. Set it (export "
         "NOT_SET=...) or give its value: --env NOT_SET=VALUE."),
        ("1X=2", "--env '1X': not a variable name; give NAME=VALUE or NAME"),
        ("REPROBUILD_OUTPUTS=/x", "--env REPROBUILD_OUTPUTS: `reprobuild run` sets "
         "REPROBUILD_OUTPUTS itself; choose another name."),
    ],
)  # fmt: skip
def test_bad_variables(assignment: str, message: str) -> None:
    with pytest.raises(RunInputError) as raised:
        inputs.environment([assignment], source={})
    assert str(raised.value).startswith(message)


def test_an_env_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(RunInputError) as raised:
        inputs.environment([], [str(tmp_path / "none.env")], source={})
    assert str(raised.value) == (
        f"--env-file {tmp_path}/none.env: No such file or directory. Give a readable file of "
        "NAME=VALUE lines."
    )
    bad = tmp_path / "bad.env"
    bad.write_text("NAME=ok\n-----BEGIN KEY-----\n")
    with pytest.raises(RunInputError) as raised:
        inputs.environment([], [str(bad)], source={})
    assert str(raised.value) == (
        f"--env-file {bad}, line 2: not NAME=VALUE or NAME (NAME of letters, digits and '_', not "
        "starting with a digit). A value cannot span lines in an env file."
    )


@pytest.mark.parametrize(
    ("name", "secret"),
    [("WANDB_API_KEY", True), ("HF_TOKEN", True), ("DB_PASSWORD", True), ("OPENAI_APIKEY", True),
     ("AWS_SECRET_ACCESS_KEY", True), ("MAX_TOKENS", False), ("TOKENIZERS_PARALLELISM", False),
     ("KEYBOARD", False), ("LR", False)],
)  # fmt: skip
def test_secret_names(name: str, secret: bool) -> None:
    assert inputs.is_secret(name) is secret


def test_a_declared_secret_alone_passes_its_value() -> None:
    environment = inputs.environment([], [], ["DB"], {"DB": "pw"})
    assert (environment.values, environment.recorded()) == ({"DB": "pw"}, {"DB": None})
    with pytest.raises(RunInputError, match=r"^--secret DB: DB is not set in this environment"):
        inputs.environment([], [], ["DB"], {})


@pytest.mark.parametrize(
    ("text", "size"),
    [("64m", 64 * 2**20), ("8g", 8 * 2**30), ("1GiB", 2**30), ("512MB", 512 * 2**20),
     ("1048576", 2**20), ("2 g", 2 * 2**30)],
)  # fmt: skip
def test_shm_sizes(text: str, size: int) -> None:
    assert inputs.shm_bytes(text) == size


@pytest.mark.parametrize("text", ["", "lots", "0", "1k", "-1g", "1.5g"])
def test_bad_shm_sizes(text: str) -> None:
    with pytest.raises(RunInputError) as raised:
        inputs.shm_bytes(text)
    assert str(raised.value) == (
        f"--shm-size {text!r}: give a size of at least 1m, such as 512m or 8g."
    )


@pytest.mark.parametrize(
    ("output", "hinted"),
    [
        (b"OSError: [Errno 30] Read-only file system: 'out.txt'\n", True),
        (b"OSError: [Errno 30] Read-only file system: './data/cache.pt'\n", True),
        (b"OSError: [Errno 30] Read-only file system: '/workspace/data/x'\n", True),
        (b"touch: cannot touch '/data/train/x': Read-only file system\n", False),
        (b"sh: 1: cannot create /data/x: Read-only file system", False),
        (b"all good\n", False),
    ],
)
def test_the_read_only_hint(output: bytes, hinted: bool) -> None:
    from builder.run import run

    assert run._read_only_write(output) is hinted
