"""``make serve``'s hosts and ports come from the one settings model, and the UI it serves calls the API on the
port the server really runs on (a real ``prefect server start`` subprocess on a free port)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deployments.serve import start_api, start_local_server
from saferails.errors import ConfigurationError
from saferails.settings import load_settings
from tests.support import free_port


def test_serve_host_and_ports_are_read_from_saferails_variables() -> None:
    settings = load_settings({"SAFERAILS_SERVE_PORT": "4300", "SAFERAILS_SERVE_HOST": "0.0.0.0",
                              "SAFERAILS_METRICS_PORT": "9500", "SAFERAILS_METRICS_HOST": "0.0.0.0"})
    assert (settings.serve_host, settings.serve_port) == ("0.0.0.0", 4300)
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9500)
    defaults = load_settings({})
    assert (defaults.serve_host, defaults.serve_port, defaults.metrics_port) == ("127.0.0.1", 4200, 9464)


@pytest.mark.parametrize(("env", "names"), [
    ({"SAFERAILS_SERVE_PORT": "70000"}, "SAFERAILS_SERVE_PORT"),
    ({"SAFERAILS_SERVE_PORT": "9464"}, "SAFERAILS_METRICS_PORT"),
    ({"SAFERAILS_SERVE_HOST": "local host"}, "SAFERAILS_SERVE_HOST"),
    ({"SAFERAILS_METRICS_HOST": "a b"}, "SAFERAILS_METRICS_HOST"),
    ({"SAFERAILS_API_PORT": "9464"}, "SAFERAILS_API_PORT"),
    ({"SAFERAILS_API_PORT": "0"}, "SAFERAILS_API_PORT"),
    ({"SAFERAILS_API_HOST": "a b"}, "SAFERAILS_API_HOST"),
])
def test_an_unusable_serve_address_is_refused_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        load_settings(env)


def test_a_server_on_another_port_gives_its_ui_the_api_url_of_that_port(tmp_path: Path) -> None:
    port = free_port()
    proc, url = start_local_server(tmp_path / "prefect", "127.0.0.1", port)
    try:
        assert url == f"http://127.0.0.1:{port}/api"
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        ui = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()
        assert ui["api_url"] == f"http://127.0.0.1:{port}/api"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_make_serve_starts_the_http_api_beside_prefect_and_mails_link_to_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    monkeypatch.delenv("SAFERAILS_PUBLIC_URL", raising=False)
    monkeypatch.setenv("SAFERAILS_API_PORT", str(port))
    proc = start_api(load_settings())
    try:
        origin = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{origin}/health/live", timeout=10).status_code == 200
        assert httpx.get(f"{origin}/api/v1/actions", timeout=10).status_code == 401
        assert f"HTTP API: {origin}/api/v1" in capsys.readouterr().out
        # Flow runs of this process mint approval links to the API it started.
        assert load_settings().public_url == origin
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_callback_cancelled_at_shutdown_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from deployments.serve import quiet_cancelled

    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(quiet_cancelled)
        with caplog.at_level("ERROR", logger="asyncio"):
            loop.call_exception_handler({"message": "Exception in callback", "exception": asyncio.CancelledError()})
            assert caplog.records == []
            loop.call_exception_handler({"message": "Exception in callback", "exception": RuntimeError("real")})
        assert [r.getMessage() for r in caplog.records] == ["Exception in callback"]
        assert caplog.records[0].exc_info is not None and isinstance(caplog.records[0].exc_info[1], RuntimeError)
    finally:
        loop.close()
