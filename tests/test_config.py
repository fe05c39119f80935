"""Config schema: defaults, the shipped file, and errors that name file, line and key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.config import Config, ConfigError, load_config, parse_config
from edgecam.track import TrackerSettings, make_tracker

REPO = Path(__file__).resolve().parent.parent


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    return [str(i) for i in info.value.issues]


# Defaults derived from the host name cannot be written in a shipped file: config.yaml shows them as comments.
HOST_DERIVED = {"mqtt": {"client_id", "camera_name"}}


def test_shipped_config_is_valid_and_states_the_defaults():
    loaded = load_config(REPO / "config.yaml")
    assert loaded.config == Config()
    text = (REPO / "config.yaml").read_text()
    raw = yaml.safe_load(text)
    assert set(raw) == set(Config.model_fields)
    for section in Config.model_fields:
        if isinstance(raw[section], list):
            assert raw[section] == [], section
            continue
        derived = HOST_DERIVED.get(section, set())
        value = getattr(Config(), section)
        model = type(value)
        keys = set(model.model_fields) if hasattr(model, "model_fields") else set(dataclasses.asdict(value))
        assert set(raw[section]) | derived == keys, section
        assert all(f"# {key}:" in text for key in derived)


def test_tracker_section_is_exactly_make_tracker_keywords():
    assert set(Config().tracker_settings()) == {f.name for f in dataclasses.fields(TrackerSettings)}
    make_tracker(10.0, **parse_config("tracker:\n  max_age_s: 2.5\n").tracker_settings())


def test_out_of_range_value():
    text = "camera:\n  width: 640\n\ndetector:\n  threads: 1\n  threshold: 1.5\n"
    assert errors(text) == ["config.yaml:6: detector.threshold: must be between 0 and 1 (got 1.5)"]


def test_wrong_type():
    assert errors("stream:\n  port: http\n") == [
        "config.yaml:2: stream.port: must be a whole number (got 'http')"
    ]


def test_unknown_key_with_did_you_mean():
    assert errors("detector:\n  treshold: 0.4\n") == [
        "config.yaml:2: detector.treshold: unknown key; did you mean 'threshold'?"
    ]
    assert errors("camra:\n  fps: 5\n") == ["config.yaml:1: camra: unknown key; did you mean 'camera'?"]


def test_yaml_syntax_error_gives_the_line():
    (message,) = errors("camera:\n  width: 640\n height: 480\n")
    assert message.startswith("config.yaml:3: YAML syntax error:")


def test_every_error_is_reported_at_once_in_line_order():
    text = "camera:\n  fps: -1\ndetector:\n  classes: [persn]\n  treshold: 2\ntracker:\n  max_age_s: 0\n"
    assert errors(text) == [
        "config.yaml:2: camera.fps: must be between 0 and 240 (got -1)",
        "config.yaml:4: detector.classes[0]: unknown class 'persn'; did you mean 'person'?",
        "config.yaml:5: detector.treshold: unknown key; did you mean 'threshold'?",
        "config.yaml:7: tracker.max_age_s: must be > 0 (got 0)",
    ]


def test_duplicate_keys_and_bad_ladder():
    assert errors("stream:\n  port: 80\n  port: 81\n") == [
        "config.yaml:3: stream.port: duplicate key (the later one would win silently)"
    ]
    (message,) = errors("detector:\n  ladder: [ssd_mobilenet_v1_coco, ssdlite_mobilenet_v2_a05_coco]\n")
    assert "did you mean 'ssdlite_mobilenet_v2_a050_coco'?" in message and message.startswith(
        "config.yaml:2:"
    )


def test_an_empty_file_is_an_error_and_braces_are_all_defaults():
    """A half-written save caught by the watcher must never read as "all defaults" (auth off)."""
    for text in ("", "# nothing\n", "\n\n"):
        with pytest.raises(ConfigError, match="file is empty"):
            parse_config(text)
    assert parse_config("{}\n") == Config()


def test_relative_model_dir_resolves_next_to_the_file(tmp_path):
    path = tmp_path / "cfg" / "config.yaml"
    path.parent.mkdir()
    path.write_text("detector:\n  model_dir: m\n")
    loaded = load_config(path)
    assert loaded.resolve(loaded.config.detector.model_dir) == path.parent.resolve() / "m"


def test_check_config_cli(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "edgecam", "check-config", str(REPO / "config.yaml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and ": ok" in good.stdout
    bad_file = tmp_path / "config.yaml"
    bad_file.write_text("detector:\n  threshold: 1.5\n  treshold: 1\n")
    before = bad_file.read_bytes()
    bad = subprocess.run(
        [sys.executable, "-m", "edgecam", "check-config", str(bad_file)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert f"{bad_file}:2: detector.threshold: must be between 0 and 1 (got 1.5)" in bad.stderr
    assert f"{bad_file}:3: detector.treshold: unknown key" in bad.stderr
    assert bad_file.read_bytes() == before


yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
sections = st.dictionaries(
    st.sampled_from([*Config.model_fields, "bogus"]),
    st.dictionaries(
        st.sampled_from(["source", "width", "threshold", "classes", "port", "max_age_s", "level", "x"]),
        yaml_values,
        max_size=4,
    )
    | yaml_values,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(sections)
def test_fuzz_structured_yaml_never_crashes(data):
    try:
        parse_config(yaml.safe_dump(data), "config.yaml")
    except ConfigError as exc:
        assert exc.issues and all(str(i).startswith("config.yaml:") for i in exc.issues)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text_never_crashes(text):
    shipped = (REPO / "config.yaml").read_text()
    cut = len(text) % (len(shipped) + 1)
    for candidate in (text, shipped[:cut] + text):
        try:
            parse_config(candidate, "config.yaml")
        except ConfigError as exc:
            assert all(str(i).startswith("config.yaml:") for i in exc.issues)
