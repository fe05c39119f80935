"""Config files built to hurt: YAML alias bombs, alias loops and deep nesting are refused at once with a
message; a reload of a file cut short before its stream section never turns the password off."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgecam.config import ConfigError, load_config
from edgecam.config.load import MAX_CONFIG_VALUES
from edgecam.web.password import write_password_file

from support import A050, App, basic, get, wait_for

PASSWORD = "correct-horse-battery"
EXPANDED = f"the file holds more than {MAX_CONFIG_VALUES} values once its YAML aliases (*name) are expanded"


def bomb_levels(levels: int) -> list[str]:
    """``&a0`` holds 10 values, each next level 10 aliases to the one before: 10**levels values in all."""
    return ["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)
    ]


def alias_bomb(levels: int) -> str:
    """The levels as top-level keys a0, a1, … (the attack files' form)."""
    return "".join(f"a{i}: {level}\n" for i, level in enumerate(bomb_levels(levels)))


def issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(issue) for issue in info.value.issues]


# ---- alias bombs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (alias_bomb(7), "5: a4"),  # 10 million values as top-level keys: refused where it passes the limit
        ("camera: {}\nmotion:\n  masks:\n" + "".join(f"    - {x}\n" for x in bomb_levels(7)), "2: motion"),
    ],
    ids=["top-level", "inside-a-section"],
)
def test_an_alias_bomb_is_refused_at_once_naming_its_key(tmp_path, text, where):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    t0 = time.monotonic()
    found = issues(path)
    took = time.monotonic() - t0
    assert found == [f"{path}:{where}: {EXPANDED}, not a config (a real one has a few thousand)"]
    assert took < 0.5, took
    # A big config written out in full (15 000 values, no alias bomb) still gets its own error.
    path.write_text(yaml.safe_dump({"zones": [{"name": "z", "points": [[0.5, 0.5]] * 5000}]}))
    assert issues(path) == [f"{path}:3: zones[0].points: at most 100 points (got 5000)"]


def test_a_billion_value_bomb_is_refused_by_check_config_within_a_second(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(alias_bomb(10))  # 570 bytes; the duplicate-key walk alone took hours
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "edgecam", "check-config", str(path)],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}:5: a4: {EXPANDED}" in result.stderr
    assert took < 5, took  # mostly the interpreter's start; the check itself is milliseconds


def test_an_alias_loop_or_thousands_of_brackets_are_refused_with_a_message(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("camera: {}\ndetector: &d\n  thresholds: *d\n")
    assert issues(path) == [
        f"{path}:2: detector: a YAML alias (*name) inside the value its anchor (&name) names: "
        "a loop, never a config"
    ]
    path.write_text("camera: &l [*l]\n")
    assert issues(path)[0].startswith(f"{path}:1: camera: a YAML alias (*name) inside")
    path.write_text("camera: " + "[" * 5000 + "]" * 5000 + "\n")
    assert issues(path) == [f"{path}: nested too deeply to be a config"]


def test_anchors_in_a_real_config_work_and_a_duplicate_inside_one_is_reported_once(tmp_path):
    path = tmp_path / "config.yaml"
    text = (
        "detector:\n"
        "  classes: &people [person, bicycle]\n"
        "zones:\n"
        "  - &door\n"
        "    name: door\n"
        "    points: &door_points [[0.1, 0.1], [0.4, 0.1], [0.4, 0.9], [0.1, 0.9]]\n"
        "    classes: *people\n"
        "  - <<: *door\n"
        "    name: door_again\n"
        "lines:\n"
        "  - {name: gate, points: [[0.5, 0.0], [0.5, 1.0]], classes: *people}\n"
        "motion:\n"
        "  masks: [*door_points]\n"
    )
    path.write_text(text)
    config = load_config(path).config
    assert [z.name for z in config.zones] == ["door", "door_again"]
    assert config.zones[1].points == config.zones[0].points == config.motion.masks[0]
    people = ["person", "bicycle"]
    assert config.lines[0].classes == config.zones[1].classes == config.detector.classes == people
    # A duplicate key inside the anchored zone is one mistake on one line, however often it is aliased.
    path.write_text(text.replace("    name: door\n", "    name: door\n    name: entrance\n"))
    assert [i for i in issues(path) if "duplicate" in i] == [
        f"{path}:6: zones[0].name: duplicate key (the later one would win silently)"
    ]


# ---- a reload never drops the password by omission -----------------------------------------------------------


@pytest.mark.slow
def test_a_reload_of_a_file_cut_before_its_stream_section_keeps_the_password(tmp_path, model_dir, media_dir):
    write_password_file(tmp_path / "auth", PASSWORD)
    app = App(
        tmp_path, model_dir,
        {"camera": {"source": str(media_dir / "vtest.avi")}, "detector": {"threads": 1},
         "stream": {"password_file": str(tmp_path / "auth")}},  # auth auto: basic, as a password is set
        "--model", A050, auth=basic("edgecam", PASSWORD),
    )  # fmt: skip
    try:
        assert get(app.base + "/api/status")[0] == 401
        original = app.config_path.read_text()
        cut = original[: original.index("stream:")]  # still valid YAML: camera and detector
        assert yaml.safe_load(cut) and "password_file" not in cut
        app.config_path.write_text(cut)
        expected = (
            f"{app.config_path.resolve()}: stream: the new file sets no password_file, so the stream would be "
            "open to anyone (was the file cut short?); to turn the password off, set stream.auth: none"
        )
        status = wait_for(
            lambda: (s := app.status())["config"]["error"] is not None and s, 15, what="the refused reload"
        )
        assert status["config"]["error"] == expected
        assert status["config"]["pending_restart"] == []  # the whole cut file was refused, not just stream
        assert f"{expected}; keeping the running config" in app.log()
        assert "config reloaded" not in app.log()
        for path in ("/api/status", "/snapshot.jpg", "/stream.mjpg"):
            assert get(app.base + path)[0] == 401, path
        assert get(app.base + "/api/status", headers=app.auth)[0] == 200

        # Said explicitly, the password goes.
        config = yaml.safe_load(original)
        config["stream"] = {**config["stream"], "auth": "none"}
        app.config_path.write_text(yaml.safe_dump(config))
        wait_for(lambda: "config reloaded" in app.log(), 15, what="the explicit auth: none")
        app.auth = {}
        assert app.status()["config"]["error"] is None
        assert get(app.base + "/api/status")[0] == 200
    finally:
        app.stop()
