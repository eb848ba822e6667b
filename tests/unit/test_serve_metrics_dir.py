"""`hybridrec serve`'s multiprocess metrics directory (cli/serve.py): emptied at start, held while serving."""

from __future__ import annotations

import os

import pytest

from cli.serve import metrics_dir
from shared.errors import ConfigError


def test_a_configured_directory_is_emptied_held_and_released(tmp_path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"a dead server's values")
    with metrics_dir(tmp_path) as path:
        assert path == tmp_path and not list(tmp_path.glob("*.db"))
        (tmp_path / "counter_2.db").write_bytes(b"live")
        refused = rf"in use by a running `hybridrec serve` \(pid {os.getpid()}\)"
        with pytest.raises(ConfigError, match=refused), metrics_dir(tmp_path):
            pass
        assert (tmp_path / "counter_2.db").exists()  # the refused one deleted nothing
    with metrics_dir(tmp_path):  # released at exit: the next server starts
        assert not (tmp_path / "counter_2.db").exists()


def test_unset_gives_a_temporary_directory_removed_at_exit() -> None:
    with metrics_dir(None) as path:
        assert path.is_dir()
    assert not path.exists()
