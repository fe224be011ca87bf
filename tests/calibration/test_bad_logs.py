"""Bad access logs and timelines: exit 2 and one line naming the flag (and the file and line), never a traceback.

A cross-module test, kept on purpose: it runs ``negsync calibrate --access-log --timeline`` as a user does,
so each bad input crosses timeline, accesslogs and command together (the pure parsers have their own files).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from negsync.cli import main
from tests.calibration.synthetic import alb_lines, gcp_entries, rollout

DETACH = {"msg": "endpoint timeline", "event": "detach", "endpoint": "10.1.0.1:8080",
          "detach_issued": "2026-12-01T10:01:00Z", "detach_done": "2026-12-01T10:01:00.2Z"}


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *, log: str | None, timeline: str | None,
        extra: tuple[str, ...] = ()) -> str:
    args = ["calibrate"]
    if log is not None:
        (tmp_path / "access.log").write_text(log)
        args += ["--access-log", str(tmp_path / "access.log")]
    if timeline is not None:
        (tmp_path / "timeline.log").write_text(timeline)
        args += ["--timeline", str(tmp_path / "timeline.log")]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def good_log() -> str:
    return "\n".join(alb_lines(rollout(endpoints=3).requests)) + "\n"


def good_timeline() -> str:
    return "\n".join(rollout(endpoints=3).timeline) + "\n"


def test_access_log_and_timeline_need_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--timeline: required with --access-log" in run(tmp_path, capsys, log=good_log(), timeline=None)
    assert "--access-log: required with --timeline" in run(tmp_path, capsys, log=None, timeline=good_timeline())
    assert "--from: required (or --access-log with --timeline)" in run(tmp_path, capsys, log=None, timeline=None)


@pytest.mark.parametrize(
    ("timeline", "message"),
    [('{"msg": "controller started"}\nnot json at all\n', "holds no 'endpoint timeline' lines"),
     (json.dumps({**DETACH, "detach_done": None}), "line 1: detach_done"),
     (json.dumps({k: v for k, v in DETACH.items() if k != "detach_done"}), "line 1: detach line without detach_done"),
     (json.dumps({**DETACH, "event": "moved"}), "event must be detach or attach"),
     (json.dumps({**DETACH, "endpoint": "10.1.0.1"}), "endpoint must be 'ip:port'"),
     (json.dumps({**DETACH, "detach_done": "yesterday"}), "is not an RFC 3339 time"),
     (json.dumps({**DETACH, "detach_done": "2026-12-01T10:00:00Z"}), "detach_done is before detach_issued")],
)
def test_bad_timelines(tmp_path: Path, capsys: pytest.CaptureFixture[str], timeline: str, message: str) -> None:
    err = run(tmp_path, capsys, log=good_log(), timeline=timeline)
    assert "--timeline" in err and message in err


@pytest.mark.parametrize(
    ("log", "message"),
    [("", "is empty"),
     ("hello world this is not an access log at all, not even close\n", "line 1: not an ALB access log entry"),
     (good_log().replace(" 0.001 0.048 ", " fast 0.048 ", 1), "line 1: request_processing_time is not a number"),
     (good_log().replace(":8080 0.001", " 0.001", 1), "target:port must be 'ip:port'"),
     ('[{"timestamp": "2026-12-01T10:00:00Z", "httpRequest": {"serverIp": "10.1.0.1"}}', "not valid JSON"),
     ('{"timestamp": "2026-12-01T10:00:00Z"}\n{nope\n', "line 2: not a JSON log entry"),
     ('{"httpRequest": {"serverIp": "10.1.0.1"}}\n', "log entry without timestamp"),
     ('{"timestamp": "2026-12-01T10:00:00Z", "httpRequest": {}}\n', "no entry names a backend endpoint (1 without"),
     ('{"timestamp": "2026-12-01T10:00:00Z", "httpRequest": {"serverIp": 7}}\n', "serverIp must be a string")],
)
def test_bad_access_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str], log: str, message: str) -> None:
    err = run(tmp_path, capsys, log=log, timeline=good_timeline())
    assert "--access-log" in err and message in err


def test_logs_that_miss_the_rollout_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = gcp_entries([(0.0, "10.1.0.1:8080"), (10.0, "10.1.0.1:8080")])  # 1970: nowhere near the timeline
    err = run(tmp_path, capsys, log="\n".join(json.dumps(e) for e in entries), timeline=good_timeline())
    assert "do not overlap the timeline" in err


def test_unreadable_files_name_their_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.log").write_text(good_timeline())
    assert main(["calibrate", "--access-log", str(tmp_path / "absent.log"), "--timeline", str(tmp_path / "t.log")]) == 2
    assert "--access-log: cannot read" in capsys.readouterr().err
    (tmp_path / "a.log").write_text(good_log())
    assert main(["calibrate", "--access-log", str(tmp_path / "a.log"), "--timeline", str(tmp_path / "absent")]) == 2
    assert "--timeline: cannot read" in capsys.readouterr().err
    (tmp_path / "trunc.gz").write_bytes(b"\x1f\x8b\x08\x00")
    assert main(["calibrate", "--access-log", str(tmp_path / "trunc.gz"), "--timeline", str(tmp_path / "t.log")]) == 2
    assert "--access-log" in capsys.readouterr().err
