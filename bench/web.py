"""The web server under load and attack, on loopback only, bounded in count and time: this tree's server
(aiohttp) against the threaded ``http.server`` one it replaced (git commit 718b9c6, unpacked with
``git archive`` into a temporary folder; the working tree is not touched). Prints a table and JSON.

    .venv/bin/python bench/web.py [--only new] [--seconds 10] [--viewers 100]

Figures, per server:
- viewers: server CPU with 1 viewer and with N (ratio; goal ≤ 1.1), threads and RSS with 1 and with N;
- slowloris: 256 connections trickling headers from one host for 15 s; legitimate requests from another
  host (6, one every 2 s, 5 s timeout each) that got an answer;
- guessing: 60 concurrent wrong passwords from one host: how many were hashed (401) or refused (429), and
  the RSS growth;
- churn: 10 HEAD /stream.mjpg and 10 clients that reset right after their request, then how many viewer
  slots (of max_clients 10) are still usable, and 200 viewers that come, take their first part and go, one
  by one (the time is mostly the wait for the next frame; a refused viewer is answered at once).
Source addresses in 127.0.0.0/8 stand in for hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
OLD_COMMIT = "718b9c6"  # the last commit with the threaded http.server
MODEL = "ssdlite_mobilenet_v2_a050_coco"
PASSWORD = "correct-horse-battery"


# ---- the box under test --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Box:
    def __init__(self, tree: Path, workdir: Path, stream: dict[str, Any], password: bool = False) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        stream = {"bind": "127.0.0.1", "port": self.port, "width": 320, **stream}
        if password:
            subprocess.run(
                [sys.executable, "-m", "edgecam", "password", "set", "--file", str(workdir / "auth")],
                input=PASSWORD + "\n", text=True, cwd=tree, check=True, capture_output=True,
            )  # fmt: skip
            stream.update(auth="basic", password_file=str(workdir / "auth"))
        config = {
            "camera": {"source": str(SHARED / "media" / "vtest.avi")},
            "detector": {"model_dir": str(SHARED / "models"), "threads": 1},
            "stream": stream,
        }
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = (workdir / "app.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecam", "run", "--config", str(path), "--model", MODEL],
            cwd=tree, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        self.auth = (
            {"Authorization": "Basic " + base64.b64encode(f"edgecam:{PASSWORD}".encode()).decode()}
            if password
            else {}
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the box exited: {(workdir / 'app.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if self.get("/healthz", timeout=1)[0] == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError("the box did not come up within 60 s")

    def get(self, path: str, timeout: float = 5.0, source: str = "127.0.0.1") -> tuple[int, bytes]:
        status, reply = raw_request(self.port, path, self.auth, source=source, timeout=timeout)
        return status, reply

    def status(self) -> dict[str, Any]:
        request = urllib.request.Request(self.base + "/api/status", headers=self.auth)
        with urllib.request.urlopen(request, timeout=10) as r:
            return dict(json.loads(r.read()))

    def proc_status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def raw_request(
    port: int, path: str, headers: dict[str, str], method: str = "GET", source: str = "127.0.0.1", timeout=5.0
) -> tuple[int, bytes]:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"--edgecam-frame" in chunk:
                    break
    except OSError:
        return 0, b""
    reply = b"".join(chunks)
    return (int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0), reply


# ---- viewers ---------------------------------------------------------------------------------------------------


async def _viewer(port: int, source: str, stop: asyncio.Event, counts: list[int], i: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        while not stop.is_set():
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                return
            counts[i] += data.count(b"--edgecam-frame")
    except (asyncio.TimeoutError, OSError):
        return
    finally:
        writer.close()


def measure_viewers(box: Box, n: int, seconds: float) -> dict[str, Any]:
    """Server CPU per second, threads and RSS with 1 viewer, then with n (25 per source address)."""

    async def run() -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for count in (1, n):
            stop = asyncio.Event()
            counts = [0] * count
            tasks = [
                asyncio.create_task(_viewer(box.port, f"127.0.1.{1 + i // 25}", stop, counts, i))
                for i in range(count)
            ]
            await asyncio.sleep(3)  # all connected and flowing
            cpu0, t0 = box.cpu_s(), time.monotonic()
            parts0 = sum(counts)
            await asyncio.sleep(seconds)
            cpu = (box.cpu_s() - cpu0) / (time.monotonic() - t0)
            figures[count] = {
                "cpu": round(cpu, 3),
                "threads": box.proc_status("Threads"),
                "rss_mb": box.proc_status("VmRSS") // 1024,
                "parts_per_viewer_s": round((sum(counts) - parts0) / count / seconds, 1),
                "slowest_viewer_parts": min(counts),
            }
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(2)
        return figures

    figures = asyncio.run(run())
    one, many = figures[1], figures[n]
    return {
        "viewers": n,
        "cpu_1": one["cpu"],
        f"cpu_{n}": many["cpu"],
        "cpu_ratio": round(many["cpu"] / one["cpu"], 2) if one["cpu"] else None,
        "cpu_ms_per_viewer_s": round((many["cpu"] - one["cpu"]) / (n - 1) * 1000, 3),
        "threads_1": one["threads"],
        f"threads_{n}": many["threads"],
        "rss_mb_1": one["rss_mb"],
        f"rss_mb_{n}": many["rss_mb"],
        "fps_per_viewer_1": one["parts_per_viewer_s"],
        f"fps_per_viewer_{n}": many["parts_per_viewer_s"],
    }


# ---- attacks ---------------------------------------------------------------------------------------------------


def slowloris(box: Box, seconds: float = 15.0) -> dict[str, Any]:
    held = []
    for _ in range(256):
        try:
            s = socket.create_connection(("127.0.0.1", box.port), timeout=2, source_address=("127.0.2.1", 0))
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
            held.append(s)
        except OSError:
            pass
    ok, asked, t0 = 0, 0, time.monotonic()
    while time.monotonic() - t0 < seconds and asked < 6:
        asked += 1
        ok += box.get("/healthz" if asked % 2 else "/api/status", timeout=5, source="127.0.2.2")[0] == 200
        for s in held:  # keep trickling, one byte each
            with contextlib.suppress(OSError):
                s.sendall(b"a")
        time.sleep(2)
    for s in held:
        s.close()
    return {"connections": len(held), "legit_ok": ok, "legit_asked": asked}


def guessing(box: Box) -> dict[str, Any]:
    rss0 = box.proc_status("VmRSS")
    peak = rss0
    wrong = {"Authorization": "Basic " + base64.b64encode(b"edgecam:wrong").decode()}

    def guess(_: int) -> int:
        return raw_request(box.port, "/api/status", wrong, source="127.0.3.1", timeout=60)[0]

    with concurrent.futures.ThreadPoolExecutor(60) as pool:
        futures = [pool.submit(guess, i) for i in range(60)]
        while not all(f.done() for f in futures):
            peak = max(peak, box.proc_status("VmRSS"))
            time.sleep(0.05)
    statuses = [f.result() for f in futures]
    return {
        "guesses": 60,
        "hashed_401": statuses.count(401),
        "refused_429": statuses.count(429),
        "rss_growth_mb": (peak - rss0) // 1024,
    }


def churn(box: Box) -> dict[str, Any]:
    for i in range(10):
        raw_request(box.port, "/stream.mjpg", {}, method="HEAD", source=f"127.0.4.{1 + i % 3}", timeout=3)
    for i in range(10):
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", box.port), source_address=(f"127.0.4.{4 + i % 3}", 0))
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    time.sleep(3)
    leaked = box.status()["stream"]["clients"]
    usable = 0
    viewers = []
    for i in range(10):
        s = socket.create_connection(
            ("127.0.0.1", box.port), timeout=5, source_address=(f"127.0.4.{10 + i}", 0)
        )
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = s.recv(4096)
        usable += head.startswith(b"HTTP/1.1 200")
        viewers.append(s)
    for s in viewers:
        s.close()
    time.sleep(2)
    t0, served = time.monotonic(), 0
    for i in range(200):  # viewers that come, take a part and go
        status, _ = raw_request(box.port, "/stream.mjpg", {}, source=f"127.0.5.{1 + i % 50}", timeout=5)
        served += status == 200
    took = time.monotonic() - t0
    time.sleep(2)
    return {
        "leaked_slots": leaked,
        "usable_slots_of_10": usable,
        "churn_viewers_served": served,
        "churn_ms_per_viewer": round(took / 200 * 1000, 1),
        "clients_after": box.status()["stream"]["clients"],
    }


# ---- main ------------------------------------------------------------------------------------------------------


def bench(name: str, tree: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": name}
    box = Box(tree, tmp / name / "open", {"max_clients": max(10, args.viewers + 5)})
    try:
        result.update(measure_viewers(box, args.viewers, args.seconds))
        result.update(slowloris(box))
    finally:
        box.stop()
    box = Box(tree, tmp / name / "churn", {"max_clients": 10})
    try:
        result.update(churn(box))
    finally:
        box.stop()
    box = Box(tree, tmp / name / "locked", {}, password=True)
    try:
        result.update(guessing(box))
    finally:
        box.stop()
    return result


def table(results: list[dict[str, Any]], n: int) -> str:
    rows = [
        ("CPU, 1 viewer (cores)", "cpu_1"), (f"CPU, {n} viewers (cores)", f"cpu_{n}"),
        (f"CPU ratio {n} ÷ 1 (goal ≤ 1.1)", "cpu_ratio"), ("CPU ms per viewer-second", "cpu_ms_per_viewer_s"),
        ("threads, 1 viewer", "threads_1"), (f"threads, {n} viewers", f"threads_{n}"),
        ("RSS MB, 1 viewer", "rss_mb_1"), (f"RSS MB, {n} viewers", f"rss_mb_{n}"),
        (f"parts/s per viewer, {n} viewers", f"fps_per_viewer_{n}"),
        ("slowloris: legit answered", "legit_ok"), ("slowloris: legit asked", "legit_asked"),
        ("guessing: hashed (401) of 60", "hashed_401"), ("guessing: refused (429) of 60", "refused_429"),
        ("guessing: RSS growth MB", "rss_growth_mb"),
        ("HEAD/reset: leaked slots", "leaked_slots"), ("HEAD/reset: usable slots of 10", "usable_slots_of_10"),
        ("churn: 200 viewers served", "churn_viewers_served"), ("churn: ms to a viewer's answer", "churn_ms_per_viewer"),
    ]  # fmt: skip
    lines = [f"{'':40}" + "".join(f"{r['server']:>14}" for r in results)]
    for label, key in rows:
        lines.append(f"{label:40}" + "".join(f"{r.get(key, '–')!s:>14}" for r in results))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["new", "old"], help="measure one server only")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU window per viewer count")
    parser.add_argument("--viewers", type=int, default=100)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgecam-bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        if args.only != "new":
            old = tmp / "old-tree"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", OLD_COMMIT], cwd=REPO, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
            results.append(bench("http.server", old, tmp, args))
        if args.only != "old":
            results.append(bench("aiohttp", REPO, tmp, args))
    print(table(results, args.viewers))
    print(json.dumps({"benchmark": "web", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
