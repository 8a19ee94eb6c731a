"""The kill tests' pause points: inert without the environment variables, a blocking marker with them."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import wait_for

from bench.testhooks import HOLD_ENV, MARKER_ENV, hold


def test_hold_returns_at_once_unless_its_point_is_asked_for(monkeypatch, tmp_path):
    monkeypatch.delenv(HOLD_ENV, raising=False)
    hold("trial 0/1")
    monkeypatch.setenv(HOLD_ENV, "trial 0/2")
    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "marker"))
    hold("trial 0/1")  # another point
    assert not (tmp_path / "marker").exists()


def test_hold_writes_its_marker_and_blocks_until_killed(tmp_path):
    marker = tmp_path / "marker"
    env = {**os.environ, HOLD_ENV: "here", MARKER_ENV: str(marker)}
    code = "from bench.testhooks import hold; hold('here'); print('passed the hold')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, proc)
        assert marker.read_text() == str(proc.pid) and proc.poll() is None
    finally:
        proc.kill()
    assert "passed the hold" not in proc.communicate()[0]


def test_hold_with_a_release_file_goes_on_once_the_file_exists(tmp_path):
    from bench.testhooks import RELEASE_ENV

    marker, release = tmp_path / "marker", tmp_path / "release"
    env = {**os.environ, HOLD_ENV: "here", MARKER_ENV: str(marker), RELEASE_ENV: str(release)}
    code = "from bench.testhooks import hold; hold('here'); print('passed the hold')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, proc)
        assert proc.poll() is None  # held until released
        release.touch()
        assert "passed the hold" in proc.communicate(timeout=1800)[0] and proc.returncode == 0
    finally:
        proc.kill()
