"""The approval secret is generated once into a 0600 file outside the database and refused when exposed."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from saferails.errors import ConfigurationError, SecretFileInsecure
from saferails.secrets import approval_secret_path, load_or_create_secret


def test_the_secret_is_generated_once_and_kept_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = approval_secret_path(tmp_path / "data")
    first = load_or_create_secret(path)
    assert len(first) >= 32 and load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_processes_starting_together_all_get_the_same_secret(tmp_path: Path) -> None:
    path = approval_secret_path(tmp_path)
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(load_or_create_secret(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_secret_file_group_or_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = approval_secret_path(tmp_path)
    load_or_create_secret(path)
    path.chmod(mode)
    with pytest.raises(SecretFileInsecure):
        load_or_create_secret(path)


def test_a_symlinked_secret_file_is_refused(tmp_path: Path) -> None:
    real = approval_secret_path(tmp_path / "a")
    load_or_create_secret(real)
    link = approval_secret_path(tmp_path / "b")
    link.parent.mkdir(parents=True, mode=0o700)
    link.symlink_to(real)
    with pytest.raises(SecretFileInsecure):
        load_or_create_secret(link)


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    path = approval_secret_path(tmp_path)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError):
        load_or_create_secret(path)
