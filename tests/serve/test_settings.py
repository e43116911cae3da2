"""Server settings: read from LEADSCORE_* and refused when unsafe, with a message that says what to do."""

from __future__ import annotations

import pytest

from leadscore.serve.main import run_server
from leadscore.serve.settings import SettingsError, is_loopback, load_settings

KEY = "k" * 16


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY", "AUTH_DISABLED", "HOST", "ALLOW_INSECURE_PUBLIC", "PORT", "MAX_BATCH"):
        monkeypatch.delenv(f"LEADSCORE_{name}", raising=False)


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_API_KEY", KEY)
    monkeypatch.setenv("LEADSCORE_PORT", "9123")
    monkeypatch.setenv("LEADSCORE_MAX_BATCH", "50")
    s = load_settings()
    assert (s.host, s.port, s.max_batch, s.api_key_header) == ("127.0.0.1", 9123, 50, "X-API-Key")
    assert s.max_body_bytes == 5 * 1024 * 1024 and s.unknown_event_types == "ignore"
    assert s.key_bytes == KEY.encode()
    assert KEY not in repr(s)  # the key is a secret, never printed


def test_missing_key_fails_with_instructions() -> None:
    with pytest.raises(SettingsError, match=r"LEADSCORE_API_KEY is not set.*LEADSCORE_AUTH_DISABLED"):
        load_settings()


def test_short_key_fails() -> None:
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings(api_key="short-key")


def test_auth_disabled_on_loopback_is_allowed() -> None:
    s = load_settings(auth_disabled=True)
    assert s.key_bytes is None


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "scoring.internal", "::"])
def test_auth_disabled_on_a_public_interface_fails(host: str) -> None:
    with pytest.raises(SettingsError, match="LEADSCORE_ALLOW_INSECURE_PUBLIC"):
        load_settings(auth_disabled=True, host=host)
    assert load_settings(auth_disabled=True, host=host, allow_insecure_public=True).host == host


def test_bad_values_are_named() -> None:
    with pytest.raises(SettingsError, match="LEADSCORE_UNKNOWN_EVENT_TYPES"):
        load_settings(api_key=KEY, unknown_event_types="drop")
    with pytest.raises(SettingsError, match="LEADSCORE_PORT"):
        load_settings(api_key=KEY, port=70000)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_command_exits_cleanly_on_unsafe_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_server(host="0.0.0.0")
    assert exc.value.code == 2
    assert "LEADSCORE_API_KEY is not set" in capsys.readouterr().err
