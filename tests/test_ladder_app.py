"""The real two-model ladder on a real video: a CPU hog makes it step down with the stream still flowing,
and it steps back up when the hog stops. Waits are bounded generously; bench/ladder.py has the figures."""

from __future__ import annotations

import re
import statistics
import threading
import time

import pytest
import yaml

from support import App, CpuHog, MjpegReader, wait_for

pytestmark = pytest.mark.slow
BIG, SMALL = "ssdlite_mobilenet_v2_coco", "ssdlite_mobilenet_v2_a050_coco"


def test_steps_down_under_load_and_back_up(tmp_path, model_dir, media_dir):
    config = {
        "camera": {"source": str(media_dir / "vtest.avi")},
        "detector": {"ladder": [BIG, SMALL], "threads": 1, "min_fps": 0.0},
        "adapt": {"down_after_s": 3, "up_after_s": 10, "up_margin": 1.2, "cooldown_s": 5},
        "stream": {"fps": 30},
    }
    app = App(tmp_path, model_dir, config)
    hog = CpuHog()
    gaps: list[float] = []
    reading = threading.Event()
    reading.set()

    def watch() -> None:
        reader = MjpegReader(app.base + "/stream.mjpg")
        last = time.monotonic()
        while reading.is_set():
            reader.part()
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        reader.close()

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        # Calibrate on this machine, in the running app: min_fps = 0.6 × the big model's idle rate (under
        # it, and above its rate with 4 busy processes on 2 cores, ≈ 0.45×), set by a live config edit.
        # The rate the ladder judges is what inference could do (from its busy time), not the camera's rate:
        # with LiteRT the big model runs far faster than this 10 fps video.
        wait_for(lambda: app.status()["inference"]["frames"] >= 10, 60, what="inference to run")
        samples = []
        for _ in range(8):
            time.sleep(1)
            samples.append(app.status()["ladder"]["rate_fps"] or 0.0)
        idle_fps = statistics.median(samples)
        min_fps = round(0.6 * idle_fps, 2)
        config["detector"]["min_fps"] = min_fps
        app.config_path.write_text(yaml.safe_dump(config))
        wait_for(lambda: app.status()["ladder"]["target_fps"] == min_fps, 20, what="min_fps applied live")
        assert app.status()["ladder"]["position"] == 0, app.log()
        ids_before = max((t["id"] for t in app.status()["tracks"]), default=0)
        watcher.start()
        hog.start()
        wait_for(lambda: app.status()["ladder"]["position"] == 1, 60, what="a step down under load")
        down = app.status()["ladder"]["switches"][-1]
        assert (down["from"], down["to"]) == (BIG, SMALL) and "fps <" in down["reason"]
        contention = float(re.search(r"contention ×([\d.]+)", down["reason"]).group(1))
        assert contention >= 1.3, down  # the hog is seen as contention (≈ 2 measured with 4 on 2 cores)
        time.sleep(3)  # the stream keeps flowing through and after the swap
        hog.stop()
        wait_for(lambda: app.status()["ladder"]["position"] == 0, 90, what="a step back up after the load")
        status = app.status()
        up = status["ladder"]["switches"][-1]
        assert (up["from"], up["to"]) == (SMALL, BIG) and "predicted" in up["reason"]
        assert len(status["ladder"]["switches"]) == 2
        ids_after = max((t["id"] for t in status["tracks"]), default=ids_before)
        assert ids_after >= ids_before  # one tracker through both swaps: ids continue, never restart
    finally:
        hog.stop()
        reading.clear()
        if watcher.is_alive():
            watcher.join(10)  # the reader leaves after its next part, before the server goes away
        app.stop()
    assert len(gaps) > 20
    assert max(gaps) < 3.0, f"the stream paused for {max(gaps):.1f} s"
    print(
        f"\nbig model idle {idle_fps:.1f} fps, min_fps {min_fps}; {len(gaps)} parts, longest gap {max(gaps):.2f} s"
    )
