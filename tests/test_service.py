"""service.py: sd_notify over a real datagram socket, the watchdog logic, and run_service's signals in a real
process (a fake pipeline, and the real Pipeline on a video file)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from edgecam.app.supervisor import Stage, Supervisor
from edgecam.app.systemd import ServiceNotifier, status_line

REPO = Path(__file__).resolve().parent.parent


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket (a path, or abstract with '@')."""

    def __init__(self, address: str) -> None:
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def receive(self, timeout: float = 5.0, until: str | None = None) -> list[str]:
        """Collect datagrams until one contains ``until`` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(msg)
            if until is not None and until in msg:
                return self.messages
        if until is not None:
            raise AssertionError(f"no {until!r} within {timeout} s; got {self.messages[-5:]}")
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(str(tmp_path / "notify"))
    yield s
    s.close()


# ---- the notifier ---------------------------------------------------------------------------------------


def test_notify_over_a_path_socket(notify_socket):
    n = ServiceNotifier({"NOTIFY_SOCKET": notify_socket.env_value})
    assert n.enabled
    assert n.ready("source live 15.0 fps")
    assert n.watchdog()
    assert notify_socket.receive(until="WATCHDOG=1") == ["READY=1\nSTATUS=source live 15.0 fps", "WATCHDOG=1"]


def test_notify_over_an_abstract_socket():
    s = NotifySocket(f"@edgecam-test-{uuid.uuid4().hex}")
    try:
        n = ServiceNotifier({"NOTIFY_SOCKET": s.env_value})
        assert n.status("hello")
        assert s.receive(until="STATUS=hello") == ["STATUS=hello"]
    finally:
        s.close()


def test_without_systemd_everything_is_a_no_op():
    n = ServiceNotifier({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert not n.ready() and not n.watchdog()


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_this_pid(tmp_path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "30000000"}
    assert ServiceNotifier(env).watchdog_interval_s == 15.0
    assert ServiceNotifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 15.0
    assert ServiceNotifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval_s is None


def test_a_vanished_socket_does_not_raise(tmp_path):
    n = ServiceNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.notify("STATUS=x") is False


# ---- pure logic -----------------------------------------------------------------------------------------


class Beat:
    """A stage whose heartbeat the test sets, and whose restart works or fails as told."""

    def __init__(self, now: list[float], restart_ok: bool = True) -> None:
        self.now, self.beat, self.restart_ok, self.restarted = now, now[0], restart_ok, 0

    def restart(self) -> None:
        if not self.restart_ok:
            raise RuntimeError("cannot reopen")
        self.restarted += 1
        self.beat = self.now[0]


def test_supervisor_restarts_a_stuck_stage_and_keeps_feeding_systemd(notify_socket):
    n = ServiceNotifier({"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "2000000"})
    now = [1000.0]
    capture, inference = Beat(now), Beat(now)
    stages = [Stage("capture", lambda: capture.beat, capture.restart),
              Stage("inference", lambda: inference.beat, inference.restart)]  # fmt: skip
    sup = Supervisor(stages, limit_s=30, clock=lambda: now[0])
    sup.attach(n)
    sup.tick()
    assert sup.pings == 1
    now[0] = 1020.0
    capture.beat = 1019.0  # a reconnecting capture loop still beats
    sup.tick()
    assert sup.pings == 2 and sup.restarts == 0
    now[0] = 1031.0  # inference stuck inside a call for 31 s: restarted, and systemd still fed
    sup.tick()
    assert inference.restarted == 1 and sup.restarts == 1 and sup.healthy and sup.pings == 3
    msgs = notify_socket.receive(timeout=1)
    assert msgs.count("WATCHDOG=1") == 3
    assert "WATCHDOG_USEC=30000000" in msgs  # systemd's limit follows service.watchdog_s


def test_supervisor_gives_up_on_a_stage_it_cannot_restart_and_stops_the_pings(notify_socket):
    n = ServiceNotifier({"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "2000000"})
    now = [1000.0]
    camera = Beat(now, restart_ok=False)
    sup = Supervisor(
        [Stage("capture", lambda: camera.beat, camera.restart)], limit_s=10, clock=lambda: now[0]
    )
    sup.attach(n)
    now[0] = 1011.0
    sup.tick()
    assert not sup.healthy and sup.pings == 0
    msgs = notify_socket.receive(timeout=1)
    assert "WATCHDOG=1" not in msgs
    assert any(m.startswith("STATUS=stuck: capture") for m in msgs)


def test_supervisor_gives_up_after_too_many_restarts():
    now = [0.0]
    stage = Beat(now)
    sup = Supervisor([Stage("encoder", lambda: stage.beat, stage.restart)], limit_s=5, max_restarts=2,
                     clock=lambda: now[0])  # fmt: skip
    for _ in range(3):
        now[0] += 6.0
        stage.beat = now[0] - 6.0  # stuck again after each restart
        sup.check()
    assert sup.restarts == 2 and not sup.healthy


def test_a_live_change_of_the_limit_is_told_to_systemd(notify_socket):
    n = ServiceNotifier({"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "30000000"})
    sup = Supervisor([], limit_s=30)
    sup.attach(n)
    sup.limit_s = 90
    msgs = notify_socket.receive(timeout=1)
    assert msgs[-1] == "WATCHDOG_USEC=90000000"


def test_status_line():
    status = {
        "source": {"state": "reconnecting", "reason": "no device", "fps": 0.0},
        "inference": {"fps": 4.25},
        "detector": {"model": "ssd_mobilenet_v1_coco", "device": "cpu"},
        "stream": {"clients": 2},
    }
    assert status_line(status) == (
        "source reconnecting (no device) 0.0 fps; model ssd_mobilenet_v1_coco on cpu 4.2 fps; 2 viewer(s)"
    )


# ---- run_service in a real process ---------------------------------------------------------------------

FAKE_APP = textwrap.dedent(
    """
    import logging, sys, threading, time
    from edgecam.app.supervisor import Stage as SupStage, Supervisor
    from edgecam.app.systemd import run_service
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)

    class Stage:
        def __init__(self):
            self.heartbeat = time.monotonic()
            self.frozen = False
            threading.Thread(target=self.loop, daemon=True).start()
        def loop(self):
            while True:
                if not self.frozen:
                    self.heartbeat = time.monotonic()
                time.sleep(0.05)

    class FakePipeline:
        def __init__(self):
            self.inference = Stage()
            self.reloads = 0

            def cannot_restart():
                raise RuntimeError("a hung invoke")

            self.supervisor = Supervisor(
                [SupStage("inference", lambda: self.inference.heartbeat, cannot_restart)], 1.0, interval_s=0.1
            )
            self.supervisor.start()
        def status(self):
            return {"source": {"state": "live", "fps": 15.0}, "inference": {"fps": 7.0},
                    "detector": {"model": "m", "device": "cpu"}, "stream": {"clients": 0}}
        def reload(self):
            self.reloads += 1
            print("reload", self.reloads, flush=True)
            if self.reloads == 2:
                raise ValueError("config.yaml:3: detector.threshold: must be between 0 and 1")
            if self.reloads == 3:
                self.inference.frozen = True  # a hung invoke from now on
            return True

    stop = threading.Event()
    run_service(FakePipeline(), stop)
    print("clean exit", flush=True)
    """
)


def _spawn(code: str, notify: NotifySocket, watchdog_usec: int, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": notify.env_value, "WATCHDOG_USEC": str(watchdog_usec)}
    env.pop("WATCHDOG_PID", None)
    script = tmp_path / "app.py"
    script.write_text(code)
    return subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_run_service_ready_reload_stuck_and_stop(notify_socket, tmp_path):
    proc = _spawn(FAKE_APP, notify_socket, 400_000, tmp_path)  # WatchdogSec=0.4 s: a ping every 0.2 s
    try:
        msgs = notify_socket.receive(until="READY=1")
        assert "READY=1\nSTATUS=source live 15.0 fps; model m on cpu 7.0 fps; 0 viewer(s)" in msgs
        notify_socket.receive(until="WATCHDOG=1")

        proc.send_signal(signal.SIGHUP)  # a good reload
        msgs = notify_socket.receive(until="READY=1")
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in msgs)

        notify_socket.messages.clear()
        proc.send_signal(signal.SIGHUP)  # a bad config: the running one is kept, the service stays up
        msgs = notify_socket.receive(until="reload failed")
        assert "running config kept: config.yaml:3: detector.threshold" in msgs[-1]
        notify_socket.messages.clear()
        notify_socket.receive(until="WATCHDOG=1")  # still pinging

        proc.send_signal(signal.SIGHUP)  # this reload freezes the inference stage
        notify_socket.receive(until="STATUS=stuck: inference")
        notify_socket.messages.clear()
        time.sleep(1.0)
        assert "WATCHDOG=1" not in notify_socket.receive(timeout=0.5), (
            "pings must stop while a stage is stuck"
        )
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert "STOPPING=1" in notify_socket.receive(timeout=1, until="STOPPING=1")
        assert "clean exit" in out and "config reload failed, keeping the running config" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


REAL_APP = textwrap.dedent(
    """
    import json, logging, sys, threading
    from pathlib import Path
    from edgecam.config import load_config
    from edgecam.app.pipeline import Overrides, Pipeline
    from edgecam.app.systemd import run_service
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    loaded = load_config(Path(sys.argv[1]))
    pipeline = Pipeline(loaded, Overrides(port=0, bind="127.0.0.1"))
    pipeline.start()
    print(json.dumps({"port": pipeline.port}), flush=True)
    stop = threading.Event()
    try:
        run_service(pipeline, stop)
    finally:
        pipeline.stop()
    """
)


@pytest.mark.slow
def test_real_pipeline_is_ready_only_once_it_serves(notify_socket, tmp_path, model_dir, media_dir):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"camera: {{source: {media_dir / 'vtest.avi'}}}\n"
        f"detector: {{model_dir: {model_dir}, ladder: [ssdlite_mobilenet_v2_a050_coco]}}\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen(
        [sys.executable, "-c", REAL_APP, str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        port = json.loads(proc.stdout.readline())["port"]
        first_answer: list[float] = []

        def poll() -> None:  # from before READY: when did the server first answer?
            deadline = time.monotonic() + 60
            while not first_answer and time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                except urllib.error.HTTPError:  # a 503 while the first frames come is an answer too
                    pass
                except OSError:
                    time.sleep(0.01)
                    continue
                first_answer.append(time.monotonic())

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        msgs = notify_socket.receive(timeout=30, until="READY=1")
        ready_at = time.monotonic()
        poller.join(5)
        assert first_answer, "the server never answered"
        assert first_answer[0] <= ready_at + 0.25, "READY=1 came before the server answered"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
            assert r.status == 200
        ready = next(m for m in msgs if m.startswith("READY=1"))
        assert "model ssdlite_mobilenet_v2_a050_coco on cpu" in ready
        notify_socket.receive(timeout=5, until="WATCHDOG=1")
        notify_socket.messages.clear()
        notify_socket.receive(timeout=10, until="STATUS=source live")
        proc.send_signal(signal.SIGHUP)  # routed to pipeline.reload (if this version has it): never fatal
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
