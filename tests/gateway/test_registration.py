"""Client registration: kachery-cloud's init() flow, /registerClient, and `gateway clients …`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from kachery_resource.errors import ConfigError
from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..servers import cli_server
from .conftest import run_cli, run_kachery_cloud

# Runs kachery-cloud actions in order: "init" (input() patched to open the printed
# registration URL, as a user would) and "store" (store_file('a.txt')); reports each.
ACTIONS = """
import builtins, contextlib, io, json, re, requests, kachery_cloud as kc
out = io.StringIO()
registered = []
def fake_input(*args):
    url = re.findall(r"(http\\S+/registerClient/\\S+)", out.getvalue())[-1]
    registered.append(requests.get(url).json())
    return ""
builtins.input = fake_input
results = []
for action in {actions!r}:
    try:
        with contextlib.redirect_stdout(out):
            value = kc.init() if action == "init" else kc.store_file("a.txt")
        results.append({{"ok": True, "value": value}})
    except Exception as e:
        results.append({{"ok": False, "error": str(e)}})
print(json.dumps({{"results": results, "registered": registered, "output": out.getvalue()}}))
"""


def kc_actions(url: str, keys: ClientKeys, tmp_path: Path, *actions: str) -> dict[str, object]:
    (tmp_path / "a.txt").write_text("registered client's file")
    return run_kachery_cloud(ACTIONS.format(actions=list(actions)), url, keys, tmp_path / "kc",
                             tmp_path)


def test_init_with_auto_approve(tmp_path: Path, client_keys: ClientKeys) -> None:
    storage = tmp_path / "storage"
    with cli_server(["gateway", "--port", "0", "--storage", str(storage),
                     "--auto-approve-clients"]) as gw:
        out = kc_actions(gw.url, client_keys, tmp_path, "init", "store", "init")
        results = out["results"]
        assert isinstance(results, list)
        assert results[0]["ok"], out
        registered = out["registered"]
        assert isinstance(registered, list) and len(registered) == 1
        assert registered[0]["clientId"] == client_keys.client_id
        assert (registered[0]["status"], registered[0]["upload"]) == ("approved", True)
        assert results[1]["ok"] and str(results[1]["value"]).startswith("sha1://"), out
        # already registered: init prints the client page and never calls input()
        assert results[2]["ok"] and len(registered) == 1
        assert f"/client/{client_keys.client_id}" in str(out["output"])
        page = requests.get(f"{gw.url}/client/{client_keys.client_id}", timeout=10).json()
        assert page["status"] == "approved"


def test_init_needs_admin_approval(tmp_path: Path, client_keys: ClientKeys) -> None:
    storage = ["--storage", str(tmp_path / "storage")]
    with cli_server(["gateway", "--port", "0", *storage]) as gw:
        out = kc_actions(gw.url, client_keys, tmp_path, "init", "store")
        assert out["registered"][0]["status"] == "pending"  # type: ignore[index]
        results = out["results"]
        assert isinstance(results, list)
        assert "Failed to initialize" in results[0]["error"]
        assert "client_not_registered" in results[1]["error"]

        listed = run_cli("clients", "list", *storage, "--json")
        assert listed.exit_code == 0, listed.output
        records = json.loads(listed.stdout)
        assert [(r["clientId"], r["approved"]) for r in records] == [(client_keys.client_id, False)]

        added = run_cli("clients", "add", client_keys.client_id, *storage, "--upload",
                        "--label", "lab laptop", "--owner", "alice")
        assert added.exit_code == 0, added.output
        # the running gateway sees the approval at once (registry cache ≤ 1 s, init re-queries)
        out = kc_actions(gw.url, client_keys, tmp_path, "init", "store")
        results = out["results"]
        assert isinstance(results, list)
        assert results[0]["ok"] and results[1]["ok"], out
        assert "lab laptop" in str(out["output"]) and "alice" in str(out["output"])

        listed = run_cli("clients", "list", *storage)
        assert client_keys.client_id in listed.output
        assert "approved upload download" in listed.output
        removed = run_cli("clients", "remove", client_keys.client_id, *storage)
        assert removed.exit_code == 0, removed.output
        again = run_cli("clients", "remove", client_keys.client_id, *storage)
        assert isinstance(again.exception, ConfigError) and "not registered" in str(again.exception)
        assert "no clients" in run_cli("clients", "list", *storage).output


async def test_register_client_rejects_bad_signature(tmp_path: Path, client_keys: ClientKeys,
                                                     aiohttp_client: Any) -> None:
    storage = tmp_path / "storage"
    settings = load_settings(storage=str(storage))
    settings.zones["default"].auto_approve_clients = True
    client = await aiohttp_client(build_app(settings))
    other = ClientKeys.generate()
    url = f"/registerClient/{client_keys.client_id}"
    for signature in [other.sign({"type": "addClient"}), "00" * 64, "", "xyz"]:
        resp = await client.get(url, params={"signature": signature, "zone": "default"})
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_signature"
    resp = await client.get(url, params={"signature": client_keys.sign({"type": "addClient"}),
                                         "zone": "elsewhere"})
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_zone"
    assert not (storage / "clients").exists()
    resp = await client.get(url, params={"signature": client_keys.sign({"type": "addClient"}),
                                         "label": "x" * 1000})
    assert resp.status == 200 and (await resp.json())["status"] == "approved"
    assert len((await (await client.get(f"/client/{client_keys.client_id}")).json())["label"]) == 200


def test_clients_cli_validates_input(tmp_path: Path) -> None:
    done = run_cli("clients", "add", "../../etc/passwd", "--storage", str(tmp_path))
    assert done.exit_code == 2 and "64 lowercase hexadecimal" in done.output
    done = run_cli("clients", "list", "--storage", str(tmp_path), "--zone", "nope")
    assert isinstance(done.exception, ConfigError) and "no zone 'nope'" in str(done.exception)
