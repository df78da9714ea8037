"""TF Serving's REST API (``/v1/models/...``) on its own port, over a ModelManager.

Routes (case-insensitive, as the real server's regexes): ``GET /v1/models/{name}[/versions/{n}|
/labels/{label}]`` (status), ``GET .../metadata``, ``POST ...:predict`` with ``instances`` (row)
or ``inputs`` (columnar); ``:classify``/``:regress`` answer the real server's error for a predict
signature. Errors are ``{"error": "..."}`` with the HTTP status of TF Serving's mapping.
"""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from relentless_fast import model_contract as mc
from relentless_fast.serving.errors import ServingError, invalid
from relentless_fast.serving.grpc_api import metadata_response, status_response
from relentless_fast.serving.manager import ModelManager
from relentless_fast.serving.servable import Signature

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[a-zA-Z0-9_]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?/?$",
    re.IGNORECASE,
)


def _spec(m: re.Match[str], signature_name: str = "") -> Any:
    spec = model_pb2.ModelSpec(name=m["name"], signature_name=signature_name)
    if m["version"] is not None:
        spec.version.value = int(m["version"])
    elif m["label"] is not None:
        spec.version_label = m["label"]
    return spec


def _to_dict(msg: Any) -> dict[str, Any]:
    d: dict[str, Any] = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return d


def status_json(manager: ModelManager, m: re.Match[str]) -> dict[str, Any]:
    return _to_dict(status_response(manager, _spec(m)))


def metadata_json(manager: ModelManager, m: re.Match[str]) -> dict[str, Any]:
    req = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=_spec(m), metadata_field=["signature_def"]
    )
    resp = metadata_response(manager, req)
    sdm = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sdm)
    return {
        "model_spec": {
            "name": resp.model_spec.name,
            "signature_name": "",
            "version": str(resp.model_spec.version.value),
        },
        "metadata": {"signature_def": _to_dict(sdm)},
    }


def _as_array(value: Any, spec_dtype: np.dtype[Any], name: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(value, dtype=spec_dtype)
    except (ValueError, TypeError) as exc:
        raise invalid(f"input {name!r}: not a dense {spec_dtype} tensor: {exc}") from exc


def parse_predict_body(body: dict[str, Any], sig: Signature) -> tuple[dict[str, Any], bool]:
    """Inputs from a predict body; returns (inputs, row_format)."""
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows and has_cols:
        raise invalid("Not both of 'instances' and 'inputs' can be specified")
    if not (has_rows or has_cols):
        raise invalid("Missing 'inputs' or 'instances' key")
    names = sorted(sig.inputs)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise invalid("'instances' must be a non-empty list")
        if all(isinstance(r, dict) for r in rows):
            cols: dict[str, list[Any]] = {}
            for r in rows:
                for k, v in r.items():
                    cols.setdefault(k, []).append(v)
            if any(len(v) != len(rows) for v in cols.values()):
                raise invalid("Failed to process element: every instance must have every input")
        elif len(names) == 1:
            cols = {names[0]: rows}
        else:
            raise invalid(
                f"Expected each instance to be an object with the inputs {{{','.join(names)}}}"
            )
        return {k: _as_array(v, _dtype(sig, k), k) for k, v in cols.items()}, True
    inp = body["inputs"]
    if not isinstance(inp, dict):
        if len(names) != 1:
            raise invalid(f"'inputs' must name the inputs {{{','.join(names)}}}")
        inp = {names[0]: inp}
    return {k: _as_array(v, _dtype(sig, k), k) for k, v in inp.items()}, False


def _dtype(sig: Signature, name: str) -> np.dtype[Any]:
    spec = sig.inputs.get(name)
    return spec.dtype if spec is not None else np.dtype("float32")


def format_predict(out: dict[str, np.ndarray[Any, Any]], row_format: bool) -> dict[str, Any]:
    lists = {k: v.tolist() for k, v in out.items()}
    if not row_format:
        return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}
    if len(lists) == 1:
        return {"predictions": next(iter(lists.values()))}
    n = len(next(iter(out.values())))
    return {"predictions": [{k: v[i] for k, v in lists.items()} for i in range(n)]}


class RestServer:
    """Threaded HTTP server on its own port."""

    def __init__(self, manager: ModelManager, host: str, port: int, timeout_s: float) -> None:
        self.manager = manager
        self.timeout_s = timeout_s
        handler = _make_handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        m = _PATH.match(path.split("?", 1)[0])
        if m is None:
            return 404, {"error": "Malformed request: " + f"{method} {path}"}
        verb = (m["verb"] or "").lower()
        try:
            if method == "GET" and verb == "":
                return 200, status_json(self.manager, m)
            if method == "GET" and verb == "/metadata":
                return 200, metadata_json(self.manager, m)
            if method == "POST" and verb in (":predict", ":classify", ":regress"):
                return 200, self._post(m, verb, body)
            return 404, {"error": f"Malformed request: {method} {path}"}
        except ServingError as exc:
            return exc.http_status, {"error": exc.message}

    def _post(self, m: re.Match[str], verb: str, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body or b"{}")
        except ValueError as exc:
            raise invalid(f"JSON Parse error: {exc}") from exc
        if not isinstance(doc, dict):
            raise invalid("JSON Value: not an object")
        sig_name = doc.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise invalid("'signature_name' key must be a string value.")
        spec = _spec(m, sig_name)
        _, sv = self.manager.resolve(spec)
        sig = sv.signature(sig_name or mc.SIGNATURE_NAME)
        if verb != ":predict":
            method = verb[1:]
            raise invalid(
                f"Expected {method} signature method_name to be tensorflow/serving/{method}. "
                "Was: tensorflow/serving/predict"
            )
        inputs, rows = parse_predict_body(doc, sig)
        _, _, out = self.manager.predict(spec, inputs, [], self.timeout_s)
        return format_predict(out, rows)


def _make_handler(server: RestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, method: str) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            code, doc = server.handle(method, self.path, body)
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    _ = HTTPStatus
    return Handler
