"""With KACHERY_API_KEY, findFile goes to the kachery 2.x API (/api/findFile, Bearer key).

Against the fake gateway here; the end-to-end test against our real gateway (private
zone, real user keys, on demand) is tests/gateway/test_on_demand_e2e.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kachery_resource import GatewayError
from kachery_resource.client import ClientSettings, load_file

from .fakes import FakeState, Upload, sha1


def test_the_key_is_sent_as_bearer_to_find_file(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    state = fake[1]
    state.api_key = "k-123"
    data = b"found with a key"
    state.uploads[sha1(data)] = Upload(data, duration=0.1)
    keyed = dataclasses.replace(settings, api_key="k-123")
    path = load_file(f"kachery:lab:sha1:{sha1(data)}", settings=keyed)
    assert Path(path).read_bytes() == data
    assert state.gateway_requests == []  # not the kachery-cloud API
    assert state.api_requests[0] == {"type": "findFileRequest", "hashAlg": "sha1",
                                     "hash": sha1(data), "zoneName": "lab"}
    assert len(state.api_requests) >= 2  # asked again after the daemon uploaded


def test_a_wrong_key_says_what_to_check(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    fake[1].api_key = "right"
    with pytest.raises(GatewayError, match=r"HTTP 401.*check KACHERY_API_KEY") as info:
        load_file("sha1://" + "c" * 40, settings=dataclasses.replace(settings, api_key="wrong"))
    assert info.value.exit_code == 4


def test_settings_read_the_key_and_kachery_base_url(kc_dir: Path) -> None:
    env = {"KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_BASE_URL": "http://zone.example/"}
    assert ClientSettings.from_env(env).api_key is None
    assert ClientSettings.from_env(env).gateway_url == "http://zone.example"  # kachery 2.x's name
    keyed = ClientSettings.from_env({**env, "KACHERY_API_KEY": "k"})
    assert (keyed.api_key, keyed.gateway_url) == ("k", "http://zone.example")
    both = ClientSettings.from_env({**env, "KACHERY_API_KEY": "k", "KACHERY_GATEWAY_URL": "http://g"})
    assert both.gateway_url == "http://g"


def test_a_key_is_never_sent_to_the_default_gateway(kc_dir: Path) -> None:
    alone = ClientSettings.from_env({"KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_API_KEY": "k"})
    assert alone.api_key is None  # the key belongs to a gateway the user did not name here
