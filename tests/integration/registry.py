"""For unit tests: a small in-process schema registry serving the REST calls confluent-kafka's
SchemaRegistryClient makes (register, look up, fetch by id, fetch a version).

Integration tests use the real registry of deploy/local/schema_registry.py instead (the
`schema_registry` fixture below), and `FaultyRegistry` in front of it to misbehave. This
one speaks the same JSON over HTTP, with Confluent's error codes (40401 subject
not found, 40402 version not found, 40403 schema not found), but does no compatibility
checking: any schema may be registered under any subject.

`down = "refuse"` makes it answer 503 to everything (a registry that is up but broken),
`down = "unauthorized"` 401; `stop()` then `start()` again on the same port simulates one
that is unreachable.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class SchemaRegistry:
    def __init__(self, port: int = 0):
        self.schemas: dict[int, dict] = {}  # id -> {"schema", "schemaType", "references"}
        self.subjects: dict[str, list[int]] = {}  # subject -> ids by version (version = index + 1)
        self.requests: list[tuple[str, str]] = []
        self.down: str | None = None
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle

    def start(self) -> SchemaRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def do_PUT(self):
                self._answer("PUT")

            def _answer(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                status, payload = registry.handle(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *_):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # ---- the REST API

    def register(self, subject: str, schema: str, schema_type: str = "AVRO", references: list | None = None) -> int:
        with self._lock:
            entry = {"schema": schema, "schemaType": schema_type, "references": references or []}
            found = next((i for i, known in self.schemas.items() if known == entry), None)
            if found is None:
                schema_id = max(self.schemas, default=0) + 1
                self.schemas[schema_id] = entry
            else:
                schema_id = found
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def handle(self, method: str, path: str, body) -> tuple[int, object]:
        self.requests.append((method, path))
        if self.down == "refuse":
            return 503, {"error_code": 50301, "message": "Service unavailable"}
        if self.down == "unauthorized":
            return 401, {"error_code": 40101, "message": "Unauthorized"}
        path, _, _query = path.partition("?")
        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)/versions", path)):
            schema_id = self.register(m.group(1), body["schema"], body.get("schemaType", "AVRO"), body.get("references"))
            return 200, {"id": schema_id}
        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)", path)):
            ids = self.subjects.get(m.group(1), [])
            for version, schema_id in enumerate(ids, start=1):
                if self.schemas[schema_id]["schema"] == body["schema"]:
                    return 200, self._version(m.group(1), version)
            return 404, {"error_code": 40403, "message": "Schema not found"}
        if method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", path)):
            entry = self.schemas.get(int(m.group(1)))
            if entry is None:
                return 404, {"error_code": 40403, "message": "Schema not found"}
            return 200, dict(entry)
        if method == "GET" and (m := re.fullmatch(r"/subjects/([^/]+)/versions/(latest|-1|\d+)", path)):
            ids = self.subjects.get(m.group(1))
            if not ids:
                return 404, {"error_code": 40401, "message": "Subject not found"}
            version = len(ids) if m.group(2) in ("latest", "-1") else int(m.group(2))
            if not 1 <= version <= len(ids):
                return 404, {"error_code": 40402, "message": "Version not found"}
            return 200, self._version(m.group(1), version)
        if method == "GET" and (m := re.fullmatch(r"/subjects/([^/]+)/versions", path)):
            return 200, list(range(1, len(self.subjects.get(m.group(1), [])) + 1))
        if method == "GET" and path == "/subjects":
            return 200, sorted(self.subjects)
        return 404, {"error_code": 404, "message": f"not served by the test registry: {method} {path}"}

    def _version(self, subject: str, version: int) -> dict:
        schema_id = self.subjects[subject][version - 1]
        return {"subject": subject, "version": version, "id": schema_id, **self.schemas[schema_id]}


# ---------------------------------------------------------------- the real registry, and a faulty door to it


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory):
    """A real Confluent-REST schema registry (deploy/local/schema_registry.py) for the session."""
    from schema_registry import LocalSchemaRegistry  # deploy/local is on sys.path (tests/conftest.py)

    registry = LocalSchemaRegistry(tmp_path_factory.mktemp("schema-registry")).start()
    yield registry
    registry.stop()


class FaultyRegistry:
    """A door to a real registry that misbehaves on demand: `mode` "hang" (answers nothing for
    `hang_s`), "401", "403", "503", or "proxy" (forwards GETs to `upstream`); `stop()` then
    `start()` again on the same port makes it unreachable meanwhile."""

    def __init__(self, upstream: str, mode: str = "proxy", hang_s: float = 30.0):
        self.upstream, self.mode, self.hang_s = upstream, mode, hang_s
        self.requests: list[tuple[str, str]] = []
        self._port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FaultyRegistry:
        door = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):
                door.requests.append((door.mode, self.path))
                if door.mode == "hang":
                    time.sleep(door.hang_s)
                    return
                if door.mode in ("401", "403", "503"):
                    self._send(int(door.mode), json.dumps({"error_code": int(door.mode) * 100,
                                                           "message": f"test door answers {door.mode}"}).encode())
                    return
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(door.upstream + self.path, timeout=10) as answer:
                        self._send(answer.status, answer.read())
                except urllib.error.HTTPError as error:
                    self._send(error.code, error.read())

            def _send(self, status: int, data: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
