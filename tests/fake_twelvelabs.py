"""A stand-in for the Twelve Labs Embed API v2 on 127.0.0.1: a real HTTP server that answers the requests
mmcore.spaces.twelvelabs makes, with deterministic vectors, video tasks (and uploaded assets) that are "processing"
for a few polls before they are ready, and whatever refusals, failures or delays a test scripts.

Its vectors are not unit length (the space must normalise them): `vector_of(...)` gives the one it returns for
the same parts, so a test can say what the space must make of them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DIM = 8
API_KEY = "tlk_test_5ecret_KEY_0123456789"


def vector_of(*parts: object) -> list[float]:
    """The service's vector for an input: a hash of `parts` spread over [-3, 3] in each of DIM dimensions."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return [round((b / 255.0) * 6.0 - 3.0, 4) for b in digest[:DIM]]


def unit(vector) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)


class FakeTwelveLabs:
    """The server's state and script. Tests change the attributes between calls."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[dict] = []  # method, path, headers (lower-case names), body (JSON, a form's fields, None)
        self.refusals: deque[tuple[int, dict, object]] = deque()  # (status, headers, JSON body) for the next requests
        self.polls_before_ready = 2  # GETs of a task that answer "processing" before it is ready
        self.task_outcome = "ready"  # or "failed", or "processing" (never finishes)
        self.failure_reason = "The video could not be decoded"
        self.duration_s = 25.0  # of every video sent
        self.delay_s = 0.0  # before answering each request
        self.images: list[tuple[int, int]] = []  # sizes of the images received
        self.asset_outcome = "ready"  # or "failed"
        self.tasks: dict[str, dict] = {}
        self.assets: dict[str, dict] = {}  # id -> {"data", "filename", "polls"}; deleted ones leave
        self.lock = threading.Lock()

    def posts(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == path]

    def gets(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "GET"]

    def answer(self, method: str, path: str, headers: dict, body) -> tuple[int, dict, object]:
        with self.lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            if self.refusals:
                return self.refusals.popleft()
        if headers.get("x-api-key") != API_KEY:
            return 401, {}, {"code": "api_key_invalid", "message": f"The API key {headers.get('x-api-key')} is invalid."}
        if method == "POST" and path == "/v1.3/embed-v2":
            return 200, {}, {"data": [{"embedding": self.sync_vector(body)}]}
        if method == "POST" and path == "/v1.3/embed-v2/tasks":
            return self.create_task(body)
        if method == "GET" and path.startswith("/v1.3/embed-v2/tasks/"):
            return self.poll(path.rsplit("/", 1)[1])
        if method == "POST" and path == "/v1.3/assets":
            return self.create_asset(body)
        if path.startswith("/v1.3/assets/") and path.rsplit("/", 1)[1] in self.assets:
            asset_id = path.rsplit("/", 1)[1]
            if method == "DELETE":
                del self.assets[asset_id]
                return 200, {}, {}
            return self.asset_status(asset_id)
        return 404, {}, {"code": "not_found", "message": f"{method} {path} is not an endpoint"}

    def sync_vector(self, body: dict) -> list[float]:
        if body["input_type"] == "text":
            return vector_of("text", body["text"]["input_text"])
        from PIL import Image

        data = base64.b64decode(body["image"]["media_source"]["base64_string"], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            self.images.append(image.size)
        return vector_of("image", hashlib.sha256(data).hexdigest())

    def create_asset(self, form: dict) -> tuple[int, dict, object]:
        assert form["method"] == "direct", form
        asset_id = f"asset{len(self.tasks) + len(self.assets) + 1}"
        self.assets[asset_id] = {"data": form["file"], "filename": form["filename"], "polls": 0}
        return 200, {}, {"_id": asset_id, "status": "processing"}

    def asset_status(self, asset_id: str) -> tuple[int, dict, object]:
        asset = self.assets[asset_id]
        asset["polls"] += 1
        if asset["polls"] <= 1:
            return 200, {}, {"_id": asset_id, "status": "processing"}
        if self.asset_outcome == "failed":
            return 200, {}, {"_id": asset_id, "status": "failed", "error": {"message": "The file is not a playable video"}}
        return 200, {}, {"_id": asset_id, "status": "ready"}

    def create_task(self, body: dict) -> tuple[int, dict, object]:
        video = body["video"]
        source = video["media_source"]
        if "asset_id" in source:
            data = self.assets[source["asset_id"]]["data"]
        else:
            data = base64.b64decode(source["base64_string"], validate=True)
        fixed = video["segmentation"].get("temporal", video["segmentation"])
        step = fixed["fixed"]["duration_sec"]
        digest = hashlib.sha256(data).hexdigest()
        segments, start = [], 0.0
        while start < self.duration_s:
            end = min(start + step, self.duration_s)
            for option in video["embedding_option"]:
                segments.append({"embedding": vector_of("video", digest, option, start), "embedding_option": option,
                                 "embedding_scope": "clip", "start_sec": start, "end_sec": end})
            start = end
        task_id = f"task{len(self.tasks) + 1}"
        self.tasks[task_id] = {"polls": 0, "data": list(reversed(segments))}  # out of order: the space sorts them
        return 200, {}, {"_id": task_id, "status": "processing"}

    def poll(self, task_id: str) -> tuple[int, dict, object]:
        task = self.tasks.get(task_id)
        if task is None:
            return 404, {}, {"code": "not_found", "message": f"no task {task_id}"}
        task["polls"] += 1
        if task["polls"] <= self.polls_before_ready or self.task_outcome == "processing":
            return 200, {}, {"_id": task_id, "status": "processing", "data": None}
        if self.task_outcome == "failed":
            return 200, {}, {"_id": task_id, "status": "failed", "data": None, "error": {"message": self.failure_reason}}
        return 200, {}, {"_id": task_id, "status": "ready", "data": task["data"]}


@contextmanager
def twelvelabs_server():
    """Serve a FakeTwelveLabs on a free port of 127.0.0.1; yields it, its `url` the API's base (…/v1.3)."""
    fake = FakeTwelveLabs()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def handle_one(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            kind = self.headers.get("Content-Type", "")
            if kind.startswith("multipart/form-data"):
                message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
                body = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                        for part in message.iter_parts()}
                body = {k: v if k == "file" else v.decode() for k, v in body.items()}
            else:
                body = json.loads(raw) if raw else None
            status, headers, answer = fake.answer(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if fake.delay_s:
                time.sleep(fake.delay_s)
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def do_GET(self) -> None:
            self.handle_one("GET")

        def do_POST(self) -> None:
            self.handle_one("POST")

        def do_DELETE(self) -> None:
            self.handle_one("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1.3"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
