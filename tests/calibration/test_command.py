"""``negsync calibrate`` (:mod:`negsync.calibration.command`): its flags, sources and output, through ``negsync.cli.main``.

The parsers it dispatches to have their own files (test_prometheus, test_samplecsv, test_accesslogs,
test_timeline, test_propagation); here: which source is read (file, URL, CSV), what is written, and that
bad input is one line naming the flag (exit 2).  The access-log path end to end is test_roundtrip and
test_bad_logs (integration tests across timeline, accesslogs, propagation and this command).
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from negsync.cli import main
from negsync.telemetry import Telemetry


def exposition() -> bytes:
    telemetry = Telemetry(provider="gcp")
    rng = np.random.default_rng(3)
    for value in rng.lognormal(np.log(20), 0.4, 400):
        telemetry.attach_healthy_latency.record(float(value), {"provider": "gcp"})
    for value in rng.uniform(1, 3, 300):
        telemetry.detach_latency.record(float(value), {"provider": "gcp"})
    for value in rng.uniform(0.01, 0.2, 200):
        telemetry.reaction_latency.record(float(value), {"provider": "gcp", "operation": "detach"})
    return telemetry.exposition()


def test_calibrates_reaction_and_attach_from_a_metrics_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "metrics.txt"
    source.write_bytes(exposition())
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", "--from", str(source), "--out", str(out), "--provider", "gcp"]) == 0
    scenario = yaml.safe_load(out.read_text())
    attach = scenario["lb"]["attach_delay"]
    assert attach["dist"] == "empirical" and len(attach["samples"]) > 100
    # Bucket midpoints preserve the shape: the median lands in the bucket around 20 s.
    assert 10 <= float(np.median(attach["samples"])) <= 30
    assert scenario["lb"]["attach_delay_includes_health_check"] is True
    assert float(np.median(scenario["controller"]["reaction"]["samples"])) < 0.5
    err = capsys.readouterr().err
    assert "calibrated lb.attach_delay" in err and "--health-poll-interval" in err
    # The simulator accepts what calibrate wrote.
    assert main(["simulate", str(out), "--runs", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["points"]


def test_detach_api_latency_never_calibrates_the_lb_detach_delay(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Bug: the detach call's duration (~0.1-3 s) became lb.detach_delay (how long the LB keeps routing)."""
    source = tmp_path / "metrics.txt"
    source.write_bytes(exposition())
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", "--from", str(source), "--out", str(out), "--provider", "gcp"]) == 0
    scenario = yaml.safe_load(out.read_text())
    assert "detach_delay" not in scenario["lb"]  # the preset's value stands
    err = capsys.readouterr().err
    assert "not calibrated lb.detach_delay" in err
    assert "warning: not used for lb.detach_delay: negsync_detach_latency_seconds" in err
    # With only the detach histogram there is nothing to calibrate: refused, with the reason.
    only = tmp_path / "detach-only.txt"
    only.write_text("\n".join(line for line in exposition().decode().splitlines()
                              if "detach_latency" in line) + "\n")
    assert main(["calibrate", "--from", str(only)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--access-log and --timeline" in err


def test_other_providers_series_are_ignored(tmp_path: Path) -> None:
    source = tmp_path / "metrics.txt"
    source.write_bytes(exposition())
    assert main(["calibrate", "--from", str(source), "--provider", "aws", "--out", str(tmp_path / "x.yaml")]) == 2


def test_reads_a_url_and_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = exposition()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        assert main(["calibrate", "--from", url, "--out", str(tmp_path / "u.yaml")]) == 0
    finally:
        server.shutdown()
        server.server_close()
    csv = tmp_path / "samples.csv"
    csv.write_text("field,seconds\nlb.detach_delay,4.5\nlb.detach_delay,5.5\n")
    assert main(["calibrate", "--from", str(csv)]) == 0
    captured = capsys.readouterr()
    written = yaml.safe_load(captured.out)
    assert written["lb"]["detach_delay"] == {"dist": "empirical", "samples": [4.5, 5.5]}
    assert "not calibrated lb.attach_delay" in captured.err
    assert "warning: lb.detach_delay: only 2 samples" in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [("hello world\n", "neither"), ("# HELP up x\nup 1\n", "holds no negsync latency histogram"),
     # a samplecsv file with bad rows
     ("field,seconds\nlb.nope,1\n", "field must be one of"), ("field,seconds\nlb.detach_delay,-1\n", ">= 0"),
     ("field,value\n", "header")],
)
def test_bad_input_is_one_line_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                               message: str) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    assert main(["calibrate", "--from", str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from" in err[0] and message in err[0]


def test_an_unwritable_out_is_exit_2_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bug: --out /nonexistent/x.yaml ended in a FileNotFoundError traceback."""
    source = tmp_path / "samples.csv"
    source.write_text("field,seconds\ncontroller.reaction,0.5\n")
    for out in (tmp_path / "missing-dir" / "x.yaml", tmp_path):
        assert main(["calibrate", "--from", str(source), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("negsync calibrate: error: --out: cannot write") and "Traceback" not in "".join(err)
