"""Config file + CLI: every error names the file/line/key and what is allowed; exit 78 (file) or 2 (flag)."""

import dataclasses
import re

import pytest

from conftest import REPO, run_pidetect
from pidetect.config import Config, HELP, build_config, load_file
from pidetect.errors import ConfigError, UsageError


def write(tmp_path, text):
    path = tmp_path / "pidetect.toml"
    path.write_text(text)
    return path


def test_file_values_and_cli_override(tmp_path):
    path = write(tmp_path, 'source = "/dev/video2"\nthreshold = 0.6\nonly = ["person", "cat"]\ndisplay = "fb,mjpeg"\n')
    config = build_config(path, {"threshold": "0.7", "source": None})
    assert config.source == "/dev/video2" and config.threshold == 0.7
    assert config.only == ("person", "cat") and config.display == ("fb", "mjpeg")


@pytest.mark.parametrize("text,needle", [
    ('source = "x"\nthreshhold = 0.5\n', ":2: unknown key 'threshhold'; did you mean 'threshold'?"),
    ('source = "x"\nzzz_unheard_of = 0.5\n', ":2: unknown key 'zzz_unheard_of'; every key is in docs/configuration.md"),
    ('metrics-interval = 5\n', ":1: unknown key 'metrics-interval'; did you mean 'metrics_interval'?"),
    ('# cameras\n[camera]\nsource = "x"\n', ":2: unknown section 'camera'"),
    ('threshold = "high"\n', ":1: threshold = 'high': must be a number"),
    ('threshold = 1.5\n', ":1: threshold = 1.5: must be between 0 and 1"),
    ('\n\nmjpeg_port = 70000\n', ":3: mjpeg_port = 70000: must be a port number 1..65535"),
    ('display = "hdmi"\n', ":1: display = hdmi: must be one or more of none, fb, mjpeg, window"),
    ('realtime = "maybe"\n', "realtime = 'maybe': must be true or false"),
    ('source = "pipe:rpicam-vid -o -"\n', "a pipe: source needs width and height"),
    ('threshold = 0.5\nthreshold = 0.6\n', ":2: threshold is set twice (lines 1 and 2); keep one"),
    ('source = "x"\n[zones.a]\npoints = [[0, 0], [1, 0], [1, 1]]\npoints = [[0, 0], [1, 0], [0, 1]]\n', "points is set twice in [zones.a] (lines 3 and 4)"),
    ('source = "unterminated\n', "TOML syntax error"),
])
def test_bad_config_file(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as failure:
        build_config(path, {}, path_required=True)
    message = str(failure.value)
    assert str(path) in message
    assert needle in message, message


def test_bad_cli_value_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--threshold 2.0: must be between 0 and 1"):
        build_config(None, {"threshold": "2"})
    with pytest.raises(UsageError, match=r"--threads 'many': must be a whole number"):
        build_config(None, {"threads": "many"})


def test_cli_exit_codes(tmp_path):
    bad = write(tmp_path, "threshhold = 0.5\n")
    done = run_pidetect("run", "--config", bad)
    assert done.returncode == 78 and "unknown key 'threshhold'" in done.stderr and "Traceback" not in done.stderr
    done = run_pidetect("run", "--config", tmp_path / "missing.toml")
    assert done.returncode == 78 and "config file not found" in done.stderr
    done = run_pidetect("run", "--threshold", "7", "--source", "x.mp4")
    assert done.returncode == 2 and "--threshold 7.0: must be between 0 and 1" in done.stderr
    done = run_pidetect("run", "--display", "hdmi")
    assert done.returncode == 2 and "must be one or more of none, fb, mjpeg, window" in done.stderr


def test_every_key_is_a_flag_and_documented_in_the_example():
    example = (REPO / "deploy" / "pidetect.toml").read_text()
    help_text = run_pidetect("run", "--help").stdout
    for field in dataclasses.fields(Config):
        if field.name in ("zones", "filters", "notify"):  # tables: documented as commented examples
            assert re.search(rf"^#\s+\[{field.name}\.[a-z]+\]$", example, re.M), field.name
            assert "--" + field.name.replace("_", "-") + " " not in help_text, field.name
            continue
        if field.name in ("object_mask", "motion_mask"):  # file only: lists of polygons
            assert "--" + field.name.replace("_", "-") not in help_text, field.name
        else:
            assert field.name in HELP
            assert "--" + field.name.replace("_", "-") in help_text, field.name
        match = re.search(rf"^# {field.name} = (.*)$", example, re.M)
        assert match, f"{field.name} missing from deploy/pidetect.toml"
        # the documented default is the real default
        parsed = load_from_line(f"{field.name} = {match.group(1)}")
        assert parsed == getattr(Config(), field.name), field.name


def load_from_line(line):
    import tomllib

    from pidetect.config import coerce

    from pidetect.config_tables import parse_masks

    key, value = next(iter(tomllib.loads(line).items()))
    return parse_masks(value, key, "example") if key in ("object_mask", "motion_mask") else coerce(key, value)


def test_example_config_uncommented_is_valid(tmp_path):
    example = (REPO / "deploy" / "pidetect.toml").read_text()
    active = "\n".join(line[2:] for line in example.splitlines() if re.match(r"^# [a-z_]+ = ", line))
    path = write(tmp_path, active)
    values, _ = load_file(path)
    assert Config(**values) == Config()
