"""The app launcher used by the browser test and the screenshot script: clear errors."""

from __future__ import annotations

import socket

import pytest

from vt_explorer.appserver import APP, free_port, running_app


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_missing_script_is_named(tmp_path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(FileNotFoundError, match=r"nope\.py"), running_app(app=missing):
        pass


def test_server_that_cannot_start_raises_instead_of_hanging() -> None:
    with socket.socket() as busy:  # the port is taken: streamlit exits at once
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(TimeoutError), running_app(app=APP, port=port, timeout=30):
            pass
