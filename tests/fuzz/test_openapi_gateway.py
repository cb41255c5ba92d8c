"""schemathesis against the gateway's OpenAPI document (``gateway/openapi.yaml``), on a
real ``kachery-resource gateway`` over a local directory. Some cases are made to pass the
credential checks, so generated values reach the handlers: gateway calls re-signed by a
registered uploader with a fresh timestamp, kachery 2.x calls with a user's API key and a
good work token, object URLs signed with the zone's URL
secret, registrations with a valid signature. No server error outside the documented
ones (502 storage_unavailable, 503 storage_busy); the gateway serving and
traceback-free after."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kachery_resource.gateway import announcements, chunks, multipart
from kachery_resource.gateway import envelope as envelope_module
from kachery_resource.gateway.app import OPENAPI_FILE
from kachery_resource.gateway.signed_urls import UrlSigner
from kachery_resource.identity import ClientKeys
from kachery_resource.uri import is_sha1_hex

from ..gateway.conftest import GatewayProcess, envelope, run_cli
from ..gateway.test_api_v2 import work_token
from ..servers import cli_server
from .harness import budget, run_schema

pytestmark = pytest.mark.timeout(300)

ALLOWED_5XX = {502: {"storage_unavailable"}, 503: {"storage_busy"}}
# refusals before a call's handler runs: the envelope, the clock, the signature, the zone
BEFORE_HANDLER = {"body_too_large", "invalid_json", "invalid_request", "unknown_request_type",
                  "timestamp_out_of_window", "invalid_signature", "unknown_zone"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    storage = ["--storage", str(tmp_path_factory.mktemp("gw") / "storage")]
    with cli_server(["gateway", "--port", "0", *storage]) as server:
        yield GatewayProcess(server, storage, {})


V2_PATHS = ("/api/findFile", "/api/initiateFileUpload", "/api/finalizeFileUpload")


def make_v2_valid(case: Any, api_key: str, pick: int) -> None:
    """Give a kachery 2.x case the user's key, zone default and (initiate) a good work
    token for its hash, so its values reach the handler."""
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {api_key}"}
    body = case.body
    if isinstance(body, dict) and pick < 2:
        body["zoneName"] = "default"
        if pick == 0 and not is_sha1_hex(str(body.get("hash"))):
            body["hashAlg"], body["hash"] = "sha1", hashlib.sha1(str(body).encode()).hexdigest()
        if isinstance(body.get("hash"), str) and case.operation.path == "/api/initiateFileUpload":
            body["workToken"] = work_token(body["hash"])


def make_tweak(base: str, keys: ClientKeys, signer: UrlSigner, api_key: str,
               sent: Counter[str]) -> Any:
    def tweak(case: Any, pick: int) -> None:
        path = case.operation.path
        if path == "/api/gateway" and isinstance(case.body, dict) \
                and isinstance(case.body.get("payload"), dict):
            sent[str(case.body["payload"].get("type"))] += 1
        if path in V2_PATHS and pick < 4:
            make_v2_valid(case, api_key, pick)
        elif path == "/api/gateway" and pick < 4 and isinstance(case.body, dict) \
                and isinstance(case.body.get("payload"), dict):
            payload = {**case.body["payload"], "timestamp": int(time.time() * 1000)}
            if pick < 2:
                payload["zone"] = "default"
            case.body = {**envelope(keys, payload, zone=None), **(
                {} if pick else {"githubUserId": None})}
        elif path == "/files/{zone}/{key}" and pick < 4:
            params = case.path_parameters
            if pick < 3:
                params["zone"] = "default"
            key = str(params.get("key", "x"))
            method = case.method.upper()
            max_size = 64 if method == "PUT" else None
            url = signer.url(base, method, str(params["zone"]), key, 60, max_size)
            case.query = dict(q.split("=", 1) for q in url.split("?", 1)[1].split("&"))
            params["key"] = key
        elif path == "/registerClient/{client_id}" and pick < 3:
            case.path_parameters["client_id"] = keys.client_id
            case.query = {**(case.query or {}), "signature": keys.sign({"type": "addClient"})}
    return tweak


def one_type_documents(directory: Path) -> dict[str, Path]:
    """For each payload type of ``POST /api/gateway``, the document with only that path and
    only that payload: generated evenly, not mostly the first alternatives of the oneOf."""
    doc = yaml.safe_load(OPENAPI_FILE.read_text())
    payload = doc["components"]["schemas"]["Envelope"]["properties"]["payload"]
    docs = {}
    for ref in payload["oneOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        variant = copy.deepcopy(doc)
        variant["paths"] = {"/api/gateway": doc["paths"]["/api/gateway"]}
        variant["components"]["schemas"]["Envelope"]["properties"]["payload"] = ref
        docs[name] = directory / f"{name}.json"
        docs[name].write_text(json.dumps(variant))
    return docs


def test_every_operation(gateway: GatewayProcess, tmp_path: Path) -> None:
    keys = ClientKeys.generate()
    gateway.add_client(keys, "--upload")
    added = run_cli("users", "add", "fuzz", "--upload", *gateway.storage_args)
    assert added.exit_code == 0, added.output
    api_key = added.stdout.strip().splitlines()[-1]
    root = Path(gateway.storage_args[1])
    signer = UrlSigner.from_secret_file(next(root.rglob(".kachery-gateway-secret*")))
    sent: Counter[str] = Counter()
    tally = run_schema(OPENAPI_FILE, gateway.url,
                       {"*": 20, "POST /api/gateway": 80, "PUT /files/{zone}/{key}": 60,
                        "GET /files/{zone}/{key}": 40, "GET /registerClient/{client_id}": 40,
                        **{f"POST {p}": 60 for p in V2_PATHS}},
                       ALLOWED_5XX, make_tweak(gateway.url, keys, signer, api_key, sent))
    by_type = {}
    for name, doc in one_type_documents(tmp_path).items():
        by_type[name] = run_schema(doc, gateway.url, {"*": 12}, ALLOWED_5XX,
                                   make_tweak(gateway.url, keys, signer, api_key, sent))
        tally.unexpected += by_type[name].unexpected
        tally.statuses.update(by_type[name].statuses)
    assert tally.unexpected == [], tally.unexpected[:5]
    print(dict(tally.statuses))
    print({n: (dict(t.statuses), dict(t.codes)) for n, t in by_type.items()}, dict(sent))
    # each payload type was generated, and signed cases of each reached its handler
    reached = {n for n, t in by_type.items()
               if t.statuses["POST /api/gateway", 200] or set(t.codes) - BEFORE_HANDLER}
    assert reached == set(by_type), set(by_type) - reached
    assert tally.total >= budget(300), tally.statuses
    # every call type the gateway serves was generated (the document describes them all)
    served = set(requests.get(f"{gateway.url}/api/info", timeout=10).json()["requestTypes"])
    assert served == set(doc_payloads()), served ^ set(doc_payloads())
    assert served <= set(sent), (served - set(sent), sent)
    ok_calls = tally.statuses["POST /api/gateway", 200]
    assert ok_calls > 5, tally.statuses  # signed calls reached the handlers
    for path in V2_PATHS[:2]:  # keyed calls too (a finalize needs an upload before it)
        assert tally.statuses[f"POST {path}", 200] > 0, tally.statuses
    assert tally.statuses["POST /api/finalizeFileUpload", 400] > 0, tally.statuses
    assert tally.statuses["PUT /files/{zone}/{key}", 200] + tally.statuses[
        "PUT /files/{zone}/{key}", 403] > 0
    # still serving: a signed call and the info route answer
    r = requests.post(f"{gateway.url}/api/gateway", timeout=10, json=envelope(
        keys, {"type": "findFile", "hashAlg": "sha1", "hash": "e" * 40}))
    assert r.status_code == 200 and r.json() == {"type": "findFile", "found": False}
    assert requests.get(f"{gateway.url}/api/info", timeout=10).ok
    assert gateway.server.proc.poll() is None
    assert "Traceback" not in gateway.server.text(), gateway.server.text()[-3000:]


def doc_payloads() -> dict[str, dict[str, Any]]:
    """The payload schemas of ``POST /api/gateway`` by type, references resolved."""
    doc = yaml.safe_load(OPENAPI_FILE.read_text())
    schemas = doc["components"]["schemas"]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(schemas[node["$ref"].rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node
    options = resolve(schemas["Envelope"]["properties"]["payload"]["oneOf"])
    return {o["properties"]["type"]["enum"][0]: o for o in options}


BOUNDS = ("type", "minimum", "maximum", "minItems", "maxItems", "maxLength")


def bounds(prop: dict[str, Any]) -> dict[str, Any]:
    """What a property's schema bounds, in one vocabulary (pydantic's ``const`` and
    ``exclusiveMaximum`` as the document's ``enum`` and ``maximum``)."""
    got = {k: prop[k] for k in BOUNDS if k in prop}
    if "exclusiveMaximum" in prop:
        got["maximum"] = prop["exclusiveMaximum"] - 1
    if "const" in prop:
        got["enum"] = [prop["const"]]
    elif "enum" in prop:
        got["enum"] = prop["enum"]
    if "items" in prop:
        got["items"] = bounds(prop["items"])
    return got


def test_the_document_describes_every_payload_as_the_gateway_validates_it() -> None:
    models = {**envelope_module.PAYLOAD_TYPES, **multipart.PAYLOAD_TYPES,
              **announcements.PAYLOAD_TYPES, **chunks.PAYLOAD_TYPES}
    documented = doc_payloads()
    assert set(documented) == set(models), set(documented) ^ set(models)
    for name, model in models.items():
        schema, doc = model.model_json_schema(), documented[name]
        assert doc["additionalProperties"] is False, name
        assert set(doc["required"]) == set(schema["required"]), name
        assert set(doc["properties"]) == set(schema["properties"]), name
        for field, prop in schema["properties"].items():
            mine = bounds(doc["properties"][field])
            if "maxLength" not in prop:  # hashes, zones, URLs: checked by validators
                mine.pop("maxLength", None)
            assert mine == bounds(prop), (name, field, mine, bounds(prop))
