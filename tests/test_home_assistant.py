"""Home Assistant's own MJPEG camera (``homeassistant.components.mjpeg``, HA 2024.3.3: the newest that
installs on Python 3.11) driving the box, set up as the README says: with Basic auth, and with the token in
the stream URL and no still URL (then HA sends ``Authorization: Basic Og==`` for stills, which once locked
it out every minute).

HA lives in a venv of its own, cached under ``${XDG_CACHE_HOME:-~/.cache}/edgecam/ha-venv`` and created
here when missing; the test is skipped, saying why, only when pip cannot install it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import password_app

pytestmark = pytest.mark.slow
PASSWORD = "correct-horse-battery"
HA_PACKAGES = ("homeassistant==2024.3.3", "numpy==1.26.4")  # numpy: HA's camera imports its stream component

DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys, tempfile
    from aiohttp import ClientSession, web
    from homeassistant.components.mjpeg.camera import MjpegCamera
    from homeassistant.core import HomeAssistant

    async def main(url, username, password, stills, parts_wanted):
        hass = HomeAssistant(tempfile.mkdtemp())
        camera = MjpegCamera(name="edgecam", mjpeg_url=url, still_image_url=None, authentication="basic",
                             username=username or None, password=password, verify_ssl=False)
        camera.hass = hass
        hass.is_running = True
        sizes = []
        for _ in range(stills):  # what HA's frontend asks for every 10 s
            image = await camera.async_camera_image()
            sizes.append(len(image) if image and image[:2] == b"\\xff\\xd8" else None)
        # the live view: HA proxies the box's stream to its own client
        app = web.Application()
        app.router.add_get("/live", camera.handle_async_mjpeg_stream)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        jpegs = 0
        async with ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/live") as response:
                status, data = response.status, b""
                async for chunk in response.content.iter_any():
                    data += chunk
                    while (end := data.find(b"\\xff\\xd9")) >= 0:
                        jpegs, data = jpegs + 1, data[end + 2:]
                    if jpegs >= parts_wanted:
                        break
        await runner.cleanup()
        await hass.async_stop(force=True)
        print(json.dumps({"stills": sizes, "live_status": status, "live_jpegs": jpegs}))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    """
)


@pytest.fixture(scope="module")
def ha_python() -> Path:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("Home Assistant 2024.3.3 needs Python 3.11 for its venv")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecam" / "ha-venv"
    python = cache / "bin" / "python"
    ready = cache / ".edgecam-ready"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", str(cache)], check=True, timeout=120)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *HA_PACKAGES],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if pip.returncode != 0:
            pytest.skip(f"pip could not install {' '.join(HA_PACKAGES)}: {pip.stderr.strip()[-400:]}")
        ready.write_text(" ".join(HA_PACKAGES) + "\n")
    return python


def drive(ha_python: Path, tmp_path: Path, url: str, username: str, password: str, stills: int = 8) -> dict:
    driver = tmp_path / "ha_driver.py"
    driver.write_text(DRIVER)
    result = subprocess.run(
        [str(ha_python), str(driver), url, username, password, str(stills), "5"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "log": result.stderr}


@pytest.fixture(scope="module")
def box(tmp_path_factory, model_dir, media_dir):
    tmp = tmp_path_factory.mktemp("ha-box")
    app = password_app(tmp, model_dir, media_dir, PASSWORD, {"width": 320}, login=False)
    yield app
    app.stop()
    assert "Traceback" not in app.log()


def test_home_assistant_with_basic_auth(box, ha_python, tmp_path):
    got = drive(ha_python, tmp_path, f"{box.base}/stream.mjpg", "edgecam", PASSWORD)
    assert all(size for size in got["stills"]), got
    assert got["live_status"] == 200 and got["live_jpegs"] >= 5, got
    assert "Error getting" not in got["log"]


def test_home_assistant_with_the_token_in_the_url_and_no_still_url(box, ha_python, tmp_path):
    """HA sends `Basic Og==` with every still; more stills than the failure budget must all work and
    never count as failed attempts (no 429, no lockout line in the box's log)."""
    got = drive(ha_python, tmp_path, f"{box.base}/stream.mjpg?token={PASSWORD}", "", "", stills=12)
    assert len(got["stills"]) == 12 and all(got["stills"]), got
    assert got["live_status"] == 200 and got["live_jpegs"] >= 5, got
    assert "failed attempts" not in box.log()
