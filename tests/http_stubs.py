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


def send_reply(handler, status: int, payload: bytes = b"", headers: dict | None = None,
               content_length: int | None = None) -> None:
    """Send any reply: extra headers (Location, Retry-After), and a Content-Length that may
    promise more than `payload` (a body cut off when the connection closes)."""
    try:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload) if content_length is None else content_length))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = True
    except (BrokenPipeError, ConnectionResetError):
        pass


def serve(handler_class) -> tuple:
    """`handler_class` serving on 127.0.0.1 at a free port in a daemon thread: (server, port).
    Stop it with server.shutdown() (within 0.05 s)."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, server.server_address[1]


def openai_unrecognized_argument(name: str) -> bytes:
    """OpenAI's exact HTTP 400 body for a request field its Chat Completions API does not take
    (top_k, typical_p, ...)."""
    import json

    return json.dumps({"error": {"message": f"Unrecognized request argument supplied: {name}",
                                 "type": "invalid_request_error", "param": None, "code": None}},
                      indent=2).encode()
