"""Who the client is, by the one rule every service and the gateway share (issue #8 item 15)."""

import pytest
from pydantic import ValidationError

from kepler_kit.identity import TRUSTED_PROXIES, TrustedProxies, client_address
from kepler_kit.settings import KeplerSettings


def address(peer: str, forwarded: str | None, *trusted: str) -> str | None:
    scope = {"client": (peer, 1234), "state": {TRUSTED_PROXIES: TrustedProxies(trusted)}}
    return client_address(scope, forwarded)


class TestClientAddress:
    def test_without_trusted_proxies_a_forwarded_header_is_ignored(self) -> None:
        """The default: anyone can write X-Forwarded-For, so nobody's is believed."""
        assert address("198.51.100.9", "6.6.6.6, 7.7.7.7") == "198.51.100.9"

    def test_an_untrusted_peers_header_is_ignored(self) -> None:
        assert address("198.51.100.9", "6.6.6.6", "10.0.0.0/8") == "198.51.100.9"

    def test_the_rightmost_hop_that_is_not_a_trusted_proxy_is_the_client(self) -> None:
        """6.6.6.6 is what the client claimed; 203.0.113.9 is who our load balancers saw."""
        chain = "6.6.6.6, 203.0.113.9, 10.1.2.3"

        assert address("10.0.0.7", chain, "10.0.0.0/8") == "203.0.113.9"

    def test_a_chain_of_only_trusted_proxies_names_its_first_hop(self) -> None:
        assert address("10.0.0.7", "10.9.9.9, 10.1.2.3", "10.0.0.0/8") == "10.9.9.9"

    def test_ipv6_networks(self) -> None:
        assert address("fd00::1", "2001:db8::7, fd00::2", "fd00::/8") == "2001:db8::7"


class TestTrustedProxiesSetting:
    def test_comma_separated_cidrs_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEPLER_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")

        assert KeplerSettings().trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]

    def test_a_typo_fails_start_up(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEPLER_TRUSTED_PROXIES", "10.0.0.0/33")

        with pytest.raises(ValidationError):
            KeplerSettings()
