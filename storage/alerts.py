"""Alerts: one JSON line per alert in `$TRADECAST_HOME/alerts/alerts.jsonl`, optionally POSTed to a webhook.

A file first because it needs nothing running and survives everything: a failed run is on disk even when the
webhook (chat, pager) is down or not configured. Plain Python: Dagster's run-failure sensor writes through it,
and anything else that needs to raise an alert can."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from storage.home import tradecast_home

WEBHOOK_ENV = "TRADECAST_ALERT_WEBHOOK"
WEBHOOK_TIMEOUT_S = 5.0


def alerts_path(home: str | os.PathLike[str] | None = None) -> Path:
    return tradecast_home(str(home) if home else None) / "alerts" / "alerts.jsonl"


def record_alert(alert: dict[str, Any], home: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Append ``alert`` (stamped with ``time``, UTC, unless it has one) as one line; returns the record written.

    One ``write`` of a whole line under an exclusive lock: two failing runs alerting at once never interleave."""
    from ingest.files import locked

    record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **alert}
    path = alerts_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
    with locked(path), open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
    return record


def read_alerts(home: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every alert recorded so far, oldest first (none: an empty list)."""
    path = alerts_path(home)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def webhook_url() -> str | None:
    return os.environ.get(WEBHOOK_ENV, "").strip() or None


def post_webhook(url: str, alert: dict[str, Any], timeout_s: float = WEBHOOK_TIMEOUT_S) -> str | None:
    """POST ``alert`` as JSON to ``url``; None when delivered, else why not (naming the host only: a webhook URL
    often carries its token). Never raises: an alert that cannot be delivered must not turn into a second failure
    (the line in alerts.jsonl is already written)."""
    import urllib.error
    import urllib.request

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"{WEBHOOK_ENV} must be an http:// or https:// URL (scheme {parsed.scheme!r})"
    request = urllib.request.Request(url, data=json.dumps(alert, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # scheme checked above
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as exc:  # HTTPError is a URLError; timeouts are OSError
        return f"POST to {parsed.hostname} failed: {type(exc).__name__}: {exc}"
    return None if 200 <= status < 300 else f"POST to {parsed.hostname} answered HTTP {status}"
