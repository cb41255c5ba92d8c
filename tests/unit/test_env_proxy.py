from collections.abc import Iterator

import pytest

from kachery_resource import env_proxy
from kachery_resource.env_proxy import proxy_for


@pytest.fixture(autouse=True)
def fresh_lookup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    env_proxy._proxy_for.cache_clear()
    yield
    env_proxy._proxy_for.cache_clear()


def test_no_proxy_in_the_environment_means_direct() -> None:
    assert proxy_for("https://gateway.example.org/api/gateway") is None


def test_proxies_by_scheme_with_websockets_following_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "proxy.lab:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://secure.lab:8443")
    assert proxy_for("http://gw.example.org/x") == "http://proxy.lab:3128"
    assert proxy_for("ws://relay.example.org/") == "http://proxy.lab:3128"
    assert proxy_for("https://gw.example.org/x") == "http://secure.lab:8443"
    assert proxy_for("wss://relay.example.org/") == "http://secure.lab:8443"


def test_no_proxy_hosts_connect_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lab:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal.lab")
    assert proxy_for("http://localhost:8080/api/gateway") is None
    assert proxy_for("http://store.internal.lab/bucket/key") is None
    assert proxy_for("http://gw.example.org/") == "http://proxy.lab:3128"
