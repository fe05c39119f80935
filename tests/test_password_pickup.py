"""`sudo edgecam password set --file /etc/edgecam/auth` on a running box: the new password applies within a
watcher poll or two (no SIGHUP, no restart), and the file keeps the owner, group and mode the installer gave
it (root:edgecam 0640), so the service can still read it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from edgecam.web.password import read_password_file, verify_password, write_password_file

from support import get, password_app, wait_for

OLD, NEW = "old-password-1", "new-password-2"
POLL_S = 2.0  # ConfigWatcher's interval


def set_with_cli(path, password: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgecam", "password", "set", "--file", str(path)],
        input=password + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "could not keep the owner" not in result.stderr, result.stderr


@pytest.mark.slow
def test_a_password_written_over_the_file_applies_without_a_reload(tmp_path, model_dir, media_dir):
    app = password_app(tmp_path, model_dir, media_dir, OLD, {"width": 320})
    status = app.base + "/api/status"
    old, new = app.auth, {"Authorization": "Bearer " + NEW}
    try:
        assert get(status, headers=old)[0] == 200
        time.sleep(0.1)  # another mtime than the file the gate read, even on a coarse clock
        write_password_file(tmp_path / "auth", NEW)
        t0 = time.monotonic()
        # Polls with the old password, which passes (from the gate's memory) until the new file is read:
        # only the last poll is a failed attempt, far from the lockout budget.
        wait_for(lambda: get(status, headers=old)[0] == 401, 3 * POLL_S + 4, 0.25, "the old password refused")
        switched_after = time.monotonic() - t0
        app.auth = new
        assert get(status, headers=new)[0] == 200
        assert get(app.base + f"/snapshot.jpg?token={NEW}")[0] == 200
        assert get(app.base + f"/snapshot.jpg?token={OLD}")[0] == 401
        wait_for(lambda: "new password applied" in app.log(), 5, what="the log line")
        print(
            f"\nthe new password applied {switched_after:.1f} s after the file was written (poll ~{POLL_S} s)"
        )
        assert "stream password file changed: new password applied" in app.log()
    finally:
        app.stop()


@pytest.mark.parametrize("how", ["function", "cli"])
@pytest.mark.parametrize(("owner", "mode"), [((1234, 5678), 0o640), ((4321, 0), 0o600)])
def test_setting_a_password_over_a_file_keeps_its_owner_group_and_mode(tmp_path, how, owner, mode):
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = tmp_path / "auth"
    write_password_file(path, OLD)
    os.chown(path, *owner)  # as the installer does: root:edgecam 0640
    os.chmod(path, mode)
    if how == "cli":
        set_with_cli(path, NEW)
    else:
        write_password_file(path, NEW)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (*owner, mode)
    assert verify_password(NEW, read_password_file(path))
    assert [p.name for p in tmp_path.iterdir()] == ["auth"]  # no temporary file left behind


def test_a_new_password_file_is_the_writers_and_readable_by_owner_and_group_only(tmp_path):
    path = tmp_path / "auth"
    write_password_file(path, NEW)
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())
    assert stat.S_IMODE(info.st_mode) & ~0o640 == 0


@pytest.mark.slow
def test_with_a_broken_config_the_new_password_waits_for_it_once_and_applies_when_it_is_fixed(
    tmp_path, model_dir, media_dir
):
    app = password_app(tmp_path, model_dir, media_dir, OLD, {"width": 320})
    status = app.base + "/api/status"
    new = {"Authorization": "Bearer " + NEW}
    try:
        good = app.config_path.read_text()
        app.config_path.write_text(good + "detector: [\n")  # a YAML error: the running config stays
        wait_for(lambda: app.status()["config"]["error"], 3 * POLL_S + 4, what="the config error")
        time.sleep(0.1)
        write_password_file(tmp_path / "auth", NEW)
        # One reload tries it, fails on the config, says so once: not once per poll.
        wait_for(lambda: "old password stays in use" in app.log(), 3 * POLL_S + 4, what="the warning")
        time.sleep(3 * POLL_S)
        assert app.log().count("old password stays in use") == 1
        assert "new password applied" not in app.log()
        assert get(status, headers=app.auth)[0] == 200
        # Fixing the config reloads it, and the new password with it. (Polled with the old one, which passes
        # from the gate's memory until then: polling with the new one would be a run of failed attempts.)
        app.config_path.write_text(good)
        wait_for(lambda: get(status, headers=app.auth)[0] == 401, 3 * POLL_S + 4, 0.25, "the old one refused")
        app.auth = new
        assert get(status, headers=new)[0] == 200
        assert "stream password file changed: new password applied" in app.log()
        assert app.status()["config"]["error"] is None
    finally:
        app.stop()
