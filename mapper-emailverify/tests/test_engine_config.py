"""Mapper settings (DESIGN.md names) become engine config in one place."""

from __future__ import annotations

import pytest
from mapper_emailverify import ConfigError, VerifierConfig
from mapper_emailverify.engine.config import DEFAULT_EMAILVERIFY_URL


def test_defaults() -> None:
    config = VerifierConfig.from_settings({})
    assert config.smtp_check is True
    assert config.smtp_port == 25
    assert config.backend == "builtin"
    assert config.emailverify_api_url == DEFAULT_EMAILVERIFY_URL
    assert config.connect_timeout <= config.smtp_timeout
    assert config.sender.startswith("verify@")


def test_mapper_settings_pass_through_and_unknown_keys_are_ignored() -> None:
    config = VerifierConfig.from_settings(
        {
            "email_field": "email",
            "field_prefix": "EV_",
            "cache_path": None,  # mapper-only settings
            "smtp_port": "2525",
            "smtp_timeout": "3",
            "dns_nameservers": ["127.0.0.1:5353", "10.0.0.1", "[::1]:53"],
            "dns_timeout": 2,
            "concurrency": 10,
            "max_connections_per_mx": 1,
            "smtp_check": "false",
            "extra_disposable_domains": "burner.example, @Throwaway.Example",
            "socks_proxy": "socks5://127.0.0.1:1080",
            "helo_hostname": "verifier.example",
            "mail_from": "probe@verifier.example",
            "emailverify_api_url": "http://127.0.0.1:9/",
        }
    )
    assert config.smtp_port == 2525
    assert config.smtp_timeout == 3.0
    assert config.dns_nameservers == (("127.0.0.1", 5353), ("10.0.0.1", 53), ("::1", 53))
    assert config.smtp_check is False
    assert config.extra_disposable_domains == frozenset({"burner.example", "throwaway.example"})
    assert config.sender == "probe@verifier.example"
    assert config.emailverify_api_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ({"backend": "zerobounce"}, "backend must be one of"),
        ({"backend": "emailverify"}, "emailverify_api_key"),
        ({"socks_proxy": "http://proxy:8080"}, "socks5://"),
        ({"smtp_timeout": 0}, "smtp_timeout"),
        ({"dns_nameservers": ["127.0.0.1:dns"]}, "host:port"),
    ],
)
def test_config_errors_say_what_to_fix(settings: dict, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        VerifierConfig.from_settings(settings)


def test_api_key_never_in_repr() -> None:
    config = VerifierConfig.from_settings(
        {"backend": "emailverify", "emailverify_api_key": "s3cr3t-key"}
    )
    assert "s3cr3t-key" not in repr(config)
