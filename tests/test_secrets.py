"""Tests for secret references in the config: resolution through load_config, and that a
secret's value never appears in errors, reprs or logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.config import ConfigError, load_config
from monitor.platform import Platform, PlatformSettings
from monitor.secrets import Secret, SecretField

TOKEN = "EAAG-very-secret-token-1234"


class MetaSettings(PlatformSettings):
    graph_url: str = "https://graph.facebook.com/v25.0"
    access_token: SecretField | None = None


class FakeInstagram(Platform):
    """Only its settings matter here."""

    name = "instagram"
    settings_model = MetaSettings


PLATFORMS: dict[str, Platform] = {"instagram": FakeInstagram()}


def config_with(tmp_path: Path, token: str, extra: str = "") -> Path:
    """A config whose instagram access_token is the YAML text ``token``."""
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"platforms:\n  instagram:\n    access_token: {token}\n{extra}"
        "agencies: [{id: dinsos, name: Dinas Sosial}]\n",
        encoding="utf-8",
    )
    return path


def token_of(path: Path, environ: dict[str, str]) -> Secret:
    settings = load_config(path, PLATFORMS, environ).platforms["instagram"]
    assert isinstance(settings, MetaSettings)
    assert settings.access_token is not None
    return settings.access_token


def test_env_reference_uses_the_given_environ(tmp_path: Path) -> None:
    """{env: NAME} is resolved from the environ argument, and the Secret hides its value."""
    secret = token_of(config_with(tmp_path, "{env: PANTAU_TEST_ONLY_TOKEN}"),
                      {"PANTAU_TEST_ONLY_TOKEN": f"  {TOKEN}\n"})
    assert secret.get() == TOKEN
    assert TOKEN not in repr(secret)
    assert TOKEN not in str(secret)
    assert "env PANTAU_TEST_ONLY_TOKEN" in repr(secret)


def test_environ_argument_replaces_os_environ(tmp_path: Path) -> None:
    """A variable set in the process (PATH) but not in the given environ is not found."""
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, "{env: PATH}"), PLATFORMS, {})
    assert info.value.errors == [
        ("platforms.instagram.access_token", "environment variable PATH is not set")]


def test_empty_env_variable_is_an_error(tmp_path: Path) -> None:
    """An environment variable that is set but blank is rejected."""
    with pytest.raises(ConfigError, match="environment variable T is empty"):
        load_config(config_with(tmp_path, "{env: T}"), PLATFORMS, {"T": "  "})


def test_file_reference(tmp_path: Path) -> None:
    """{file: PATH} reads and strips the file; a private file logs no warning."""
    secret_file = tmp_path / "meta-token"
    secret_file.write_text(TOKEN + "\n")
    secret_file.chmod(0o600)
    with capture_logs() as logs:
        secret = token_of(config_with(tmp_path, f"{{file: {secret_file}}}"), {})
    assert secret.get() == TOKEN
    assert logs == []


def test_world_readable_secret_file_warns_once_without_content(tmp_path: Path) -> None:
    """A secret file readable by others logs one warning naming the path, never the value."""
    secret_file = tmp_path / "meta-token"
    secret_file.write_text(TOKEN)
    secret_file.chmod(0o644)
    with capture_logs() as logs:
        secret = token_of(config_with(tmp_path, f"{{file: {secret_file}}}"), {})
    assert secret.get() == TOKEN
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["path"] == str(secret_file)
    assert TOKEN not in repr(logs)


def test_credential_reference(tmp_path: Path) -> None:
    """{credential: NAME} reads $CREDENTIALS_DIRECTORY/NAME from the given environ."""
    (tmp_path / "meta-token").write_text(TOKEN)
    (tmp_path / "meta-token").chmod(0o600)
    secret = token_of(config_with(tmp_path, "{credential: meta-token}"),
                      {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert secret.get() == TOKEN
    assert "credential meta-token" in repr(secret)


def test_missing_credential_file(tmp_path: Path) -> None:
    """A credential name with no file in $CREDENTIALS_DIRECTORY is an error at the field."""
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, "{credential: nope}"), PLATFORMS,
                    {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert info.value.path == "platforms.instagram.access_token"
    assert "does not exist" in info.value.problem


@pytest.mark.parametrize("literal", [TOKEN, f'"{TOKEN}"', "123456789012345"])
def test_literal_secret_is_rejected_without_echo(tmp_path: Path, literal: str) -> None:
    """A literal secret is refused with advice on how to pass it, and is not echoed."""
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, literal), PLATFORMS, {})
    message = str(info.value)
    assert info.value.path == "platforms.instagram.access_token"
    assert "use {env: NAME}" in message
    assert "{file: /path/to/file}" in message
    assert "{credential: NAME}" in message
    assert literal.strip('"') not in message


def test_secret_under_a_misspelled_key_is_not_echoed(tmp_path: Path) -> None:
    """An unknown key holding a literal secret names the key, never the value."""
    # extra lines land inside platforms.instagram
    path = config_with(tmp_path, "{env: T}", extra=f"    acess_token: {TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {"T": "x"})
    assert info.value.errors == [
        ("platforms.instagram.acess_token",
         "unknown key 'acess_token'; did you mean 'access_token'?")]
    assert TOKEN not in str(info.value)


def test_secret_in_broken_yaml_is_not_echoed(tmp_path: Path) -> None:
    """A YAML syntax error on a line holding a secret reports the position, not the line."""
    path = tmp_path / "pantau.yaml"
    path.write_text(f"platforms:\n  instagram:\n    access_token: [{TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {})
    assert "invalid YAML at line" in str(info.value)
    assert TOKEN not in str(info.value)
