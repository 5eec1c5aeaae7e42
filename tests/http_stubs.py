"""Shared by the tests' stub HTTP servers."""

from __future__ import annotations


def reply_json(handler, status: int, payload: bytes) -> None:
    """Send a JSON reply; a client that already gave up (a stalled request) is no error."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
