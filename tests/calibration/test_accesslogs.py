"""Access-log parsing against the providers' documented entries."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from negsync.calibration.accesslogs import NO_ENDPOINT_FIELD, NO_TARGET, read_logs

# AWS's example entries (docs.aws.amazon.com/elasticloadbalancing/latest/application/
# load-balancer-access-logs.html#access-log-entry-examples; the second also reproduced by Vector's
# parse_aws_alb_log docs), trailing fields as in the current format: one routed to a target, one not.
HTTPS_ENTRY = (
    'https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 '
    '0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" "curl/7.46.0" '
    'ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/'
    '73e2d6bc24d8a067 "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" '
    '"arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" 1 '
    '2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90'
)
NO_TARGET_ENTRY = (
    'http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - 0.000 0.001 0.000 '
    '200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - '
    'arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 '
    '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z "forward" "-" "-" "-" "-" "-" "-"'
)
# Made up: an entry cut before request_creation_time (older logs, or a truncated line): routed =
# time - target_processing_time - response_processing_time.
OLD_ENTRY = ('http 2016-08-10T22:08:42.945958Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 '
             '10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1"')


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_alb_entries_give_the_instant_the_request_was_sent_to_the_target(tmp_path: Path) -> None:
    path = tmp_path / "alb.log"
    path.write_text("\n".join([HTTPS_ENTRY, NO_TARGET_ENTRY, OLD_ENTRY]) + "\n")
    logs = read_logs([path])
    routed = logs.routed["10.0.0.1:80"]
    assert routed.tolist() == pytest.approx(sorted([epoch("2018-07-02T22:22:48.364000Z") + 0.086,
                                                    epoch("2016-08-10T22:08:42.945958Z") - 0.001]))
    assert logs.skipped == {NO_TARGET: 1} and logs.entries == 3


def test_gcp_entries_use_server_ip_and_nanosecond_timestamps(tmp_path: Path) -> None:
    entries = [
        {"timestamp": "2026-12-01T10:00:00.123456789Z", "httpRequest": {"serverIp": "10.4.0.7", "status": 200},
         "jsonPayload": {"statusDetails": "response_sent_by_backend"}},
        {"timestamp": "2026-12-01T10:00:01Z", "httpRequest": {"serverIp": "[fd00::7]:8080"}},
        {"timestamp": "2026-12-01T10:00:02Z", "httpRequest": {"status": 301},
         "jsonPayload": {"statusDetails": "redirected_by_load_balancer"}},
    ]
    path = tmp_path / "gcp.json"
    path.write_text(json.dumps(entries))
    logs = read_logs([path])
    assert logs.routed["10.4.0.7"].tolist() == pytest.approx([epoch("2026-12-01T10:00:00.123456Z")])
    assert logs.lookup("10.4.0.7:8080") is logs.routed["10.4.0.7"]  # no port in the log: matched on IP
    assert logs.lookup("fd00::7:8080") is logs.routed["fd00::7:8080"]
    assert logs.skipped == {NO_ENDPOINT_FIELD: 1}
    moved = read_logs([path], endpoint_field="jsonPayload.statusDetails")  # --endpoint-field picks another path
    assert "response_sent_by_backend" in moved.routed
