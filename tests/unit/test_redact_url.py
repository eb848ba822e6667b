"""Redis URLs are printed without their password (status, the demo, the Airflow launcher)."""

from __future__ import annotations

import pytest

from shared.config import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            "rediss://default:p%40ss@host:6380/1?ssl_cert_reqs=none",
            "rediss://default:***@host:6380/1?ssl_cert_reqs=none",
        ),
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        (None, "(unset)"),
    ],
)
def test_the_password_is_masked_and_nothing_else_changes(url: str | None, shown: str) -> None:
    assert redact_url(url) == shown
