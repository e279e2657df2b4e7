"""The archive, signing and restore options refuse bad input before anything is pushed: one
paragraph naming the cause and the fix, a usage or failure exit, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli import reprobuild


def test_publish_with_a_missing_key_fails_before_reading_the_project(tmp_path: Path) -> None:
    result = reprobuild("-C", str(tmp_path), "publish", "--sign", str(tmp_path / "nokey"))
    assert result.returncode == 2
    assert str(tmp_path / "nokey") in result.stderr
    assert "--sign" in result.stderr


def test_publish_with_a_public_key_to_sign_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    result = reprobuild("-C", str(tmp_path), "publish", "--sign", f"{key}.pub")
    assert result.returncode == 2
    assert f"{key}.pub" in result.stderr


def test_verify_sha256_needs_an_archive(tmp_path: Path) -> None:
    manifest = tmp_path / "reprobuild.manifest.json"
    manifest.write_text("{}")
    result = reprobuild("verify", str(manifest), "--sha256", "ab" * 32)
    assert result.returncode == 2
    assert "--sha256 is the sha256 of an archive: give the archive." in result.stderr


def test_restore_to_a_digest_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "paper.oci.tar"
    archive.write_bytes(b"\0" * 10240)
    result = reprobuild("restore", str(archive), "--to", f"127.0.0.1:1/x@sha256:{'a' * 64}")
    assert result.returncode == 1
    assert "names a digest, but the digest is the archive's: give a name and a tag" in result.stderr


def test_restore_of_a_file_that_is_no_archive_pushes_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "paper.oci.tar"
    archive.write_bytes(b"not a tar at all" * 64)
    result = reprobuild("restore", str(archive), "--to", "127.0.0.1:1/lab/model:x")
    assert result.returncode == 1
    assert f"{archive} is damaged, so nothing was pushed: " in result.stderr
