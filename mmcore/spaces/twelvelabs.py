"""Twelve Labs Embed (Marengo): the hosted `twelvelabs` space of video segments, searched by text or image, embedded
by the Twelve Labs API.

Off unless MMCORE_TWELVELABS_API_KEY is set. When it is, every video ingested is sent to Twelve Labs whole, once
(its segments' vectors are matched to the collection's segments by start and end), and so is every text or image
query searched in this space: media leaves this machine. A file the service refuses fails by name, nothing of it
stored.

Environment:
  MMCORE_TWELVELABS_API_KEY         the API key, sent as the x-api-key header (never shown in a message)
  MMCORE_TWELVELABS_MODEL           the Marengo model (marengo3.0)
  MMCORE_TWELVELABS_URL             base URL of the API (https://api.twelvelabs.io/v1.3); plain http only to this machine
  MMCORE_TWELVELABS_VIDEO_OPTIONS   what of a video is embedded, comma-separated: visual, audio, transcription
                                    (visual,audio)
  MMCORE_TWELVELABS_TIMEOUT_S       seconds one request may take, an upload included (120)
  MMCORE_TWELVELABS_TASK_TIMEOUT_S  seconds the service may take to embed one video (1800)

The API as used here (Embed API v2 of API v1.3, from Twelve Labs' API reference and their Python SDK's types):
  POST /embed-v2        {"input_type": "text", "model_name": M, "text": {"input_text": T}}
                        {"input_type": "image", "model_name": M, "image": {"media_source": {"base64_string": B}}}
                        -> {"data": [{"embedding": [...]}]}
  POST /embed-v2/tasks  {"input_type": "video", "model_name": M, "video": {"media_source": {"base64_string": B},
                         "segmentation": {"strategy": "fixed", "fixed": {"duration_sec": S}},
                         "embedding_option": ["visual", "audio"], "embedding_scope": ["clip"]}}
                        -> {"_id": ID, "status": "processing"}
  GET /embed-v2/tasks/ID -> {"_id": ID, "status": "processing" | "ready" | "failed", "error": {"message": ...},
                         "data": [{"embedding", "embedding_option", "embedding_scope", "start_sec", "end_sec"}, ...]}
  A video over the 36 MB inline limit is uploaded first, as an asset that is deleted once its vectors are back:
  POST /assets (multipart: method=direct, file, filename) -> {"_id": A, "status": "processing"}
  GET /assets/A -> {"_id": A, "status": "processing" | "ready" | "failed", "error": {"message": ...}}
  then "media_source": {"asset_id": A} in the task, and DELETE /assets/A.
  Errors carry a JSON body {"code": ..., "message": ...}; 429 may carry a Retry-After header.

Assumptions, not checked against the live service (no access from here):
  - marengo3.0 takes the segmentation object as above; later models (marengo3.5) want it inside {"temporal": ...}.
  - With several embedding options, each segment comes back as one vector per option ("separate_embedding", the
    default). They share one latent space, so a segment's vector is their mean, re-normalised (as a CLIP segment's
    frames are). "fused_embedding" is not asked for: Marengo 3.5 takes it only with time-based metadata.
  - Media sent inline as base64 may be up to 36 MB decoded (images up to 5 MB, at least 128 px a side); a direct
    asset upload up to 200 MB. A bigger video fails by name before any byte is sent (the service takes up to 4 GB
    only from a public URL, which a local file doesn't have).
  - The service's segments may not cover the whole video (v1 dropped a last piece under 2 s): callers match
    segments by their start and end seconds, not by count.
  - The vectors' dimension is learned from one text query when the space loads, which also checks the key.
"""

from __future__ import annotations

import base64
import email.utils
import io
import ipaddress
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import numpy as np

from ..errors import MediaError, MMError, ModelUnavailable
from . import SpaceInfo, normalize
from .embed import Towers
from .registry import SpaceSpec, register

SPACE = "twelvelabs"
HOSTED = "hosted"  # SpaceInfo.backend: the model runs at the service, not here
DEFAULT_MODEL = "marengo3.0"
DEFAULT_URL = "https://api.twelvelabs.io/v1.3"
VIDEO_OPTIONS = ("visual", "audio", "transcription")
INLINE_LIMIT_BYTES = 36 * 2**20  # base64 media, decoded
UPLOAD_LIMIT_BYTES = 200 * 2**20  # a direct asset upload
IMAGE_LIMIT_BYTES = 5 * 2**20
MIN_IMAGE_SIDE = 128
MAX_IMAGE_SIDE = 2048  # far above what the model looks at; keeps a large picture under the 5 MB limit
RETRIED_STATUSES = frozenset({429, 502, 503, 504})  # rate limits and a busy or restarting gateway
_TOKEN = re.compile(r"\w+|[^\w\s]")
_MESSAGE_CHARS = 300  # of a service's message, in ours


@dataclass(frozen=True)
class TwelveLabsConfig:
    """How to reach Twelve Labs and what to ask of it. `api_key` is left out of repr."""

    api_key: str = field(repr=False)
    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    video_options: tuple[str, ...] = ("visual", "audio")
    timeout_s: float = 120.0
    task_timeout_s: float = 1800.0
    poll_s: float = 5.0  # between looks at a video's task
    attempts: int = 5  # tries of one request that is rate-limited (or, for a GET, times out)
    backoff_s: float = 1.0  # first wait when the service gives no Retry-After; doubles each try
    max_wait_s: float = 60.0  # longest single wait, whatever Retry-After asks
    inline_limit_bytes: int = INLINE_LIMIT_BYTES
    upload_limit_bytes: int = UPLOAD_LIMIT_BYTES

    def __post_init__(self):
        if not self.api_key.strip():
            raise MMError("MMCORE_TWELVELABS_API_KEY is empty")
        _check_url(self.url)
        unknown = [o for o in self.video_options if o not in VIDEO_OPTIONS]
        if unknown or not self.video_options:
            raise MMError(f"MMCORE_TWELVELABS_VIDEO_OPTIONS must name some of {', '.join(VIDEO_OPTIONS)}; "
                          f"got {', '.join(self.video_options) or 'none'}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "TwelveLabsConfig | None":
        """The configuration in `env` (os.environ by default), or None when no API key is set (the space is off).

        Raises:
            MMError: a malformed URL, number or video option.
        """
        env = dict(os.environ if env is None else env)
        key = env.get("MMCORE_TWELVELABS_API_KEY", "").strip()
        if not key:
            return None

        def seconds(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise MMError(f"{name}={raw!r} is not a number of seconds") from None
            if not value > 0:
                raise MMError(f"{name} must be positive, got {raw}")
            return value

        options = env.get("MMCORE_TWELVELABS_VIDEO_OPTIONS", "").strip()
        return cls(
            api_key=key,
            url=env.get("MMCORE_TWELVELABS_URL", "").strip() or DEFAULT_URL,
            model=env.get("MMCORE_TWELVELABS_MODEL", "").strip() or DEFAULT_MODEL,
            video_options=tuple(o.strip().lower() for o in options.split(",") if o.strip()) if options else cls.video_options,
            timeout_s=seconds("MMCORE_TWELVELABS_TIMEOUT_S", cls.timeout_s),
            task_timeout_s=seconds("MMCORE_TWELVELABS_TASK_TIMEOUT_S", cls.task_timeout_s),
        )


@dataclass(frozen=True)
class SegmentVectors:
    """A video's vectors, one per fixed segment, in time order: row i spans spans[i] = (start_s, end_s)."""

    vectors: np.ndarray
    spans: list[tuple[float, float]]


class TwelveLabsSpace(Towers):
    """The `twelvelabs` space: text queries, images and whole videos (one vector per fixed segment), embedded remotely.

    `embed` (from Towers) embeds a batch's video segments through `embed_video_file`: each file sent once.
    """

    # Marengo reads up to 500 of its own tokens. Tokens here are words and punctuation marks, and a word may be
    # several of Marengo's, so windows of half that stay inside its limit.
    max_text_tokens = 250

    def __init__(self, api: "_Api", dim: int):
        self.api = api
        self.config = api.config
        self.info = SpaceInfo(SPACE, api.config.model, "", dim, HOSTED)
        # What the service made of each file being ingested (vectors and spans, or its failure), kept while the
        # file's segments are in memory: a long video's segments come in many batches, and the file goes once.
        self._videos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._videos_lock = threading.Lock()

    @classmethod
    def load(cls, config: TwelveLabsConfig, sleep: Callable[[float], None] = time.sleep) -> "TwelveLabsSpace":
        """Connect to the service, learning the vectors' dimension from one text query (which checks the key too).

        `sleep` is how the space waits between tries and polls (a test may record the waits).
        Raises:
            ModelUnavailable: the service can't be reached, refuses the key or the model, or answers nonsense.
        """
        api = _Api(config, sleep)
        try:
            probe = api.embed({"input_type": "text", "text": {"input_text": "a photo"}})
        except MMError as e:
            api.close()
            raise ModelUnavailable(f"The Twelve Labs model {config.model} can't be used: {e}") from None
        return cls(api, probe.shape[0])

    def close(self) -> None:
        self.api.close()

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN.finditer(text)]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text (one request each: the API embeds one input at a time)."""
        rows = [self._one({"input_type": "text", "text": {"input_text": text}}) for text in texts]
        return self._stack(rows)

    def embed_images(self, images: Sequence) -> np.ndarray:
        """One vector per PIL image, each sent as a JPEG (scaled to at least 128 and at most 2048 px a side)."""
        rows = []
        for image in images:
            source = {"base64_string": base64.b64encode(_jpeg(image)).decode("ascii")}
            rows.append(self._one({"input_type": "image", "image": {"media_source": source}}))
        return self._stack(rows)

    def embed_video(self, video: bytes | Path, name: str, segment_s: float) -> SegmentVectors:
        """Vectors of a stored video, one per fixed segment of `segment_s` seconds (whole seconds, at least 1).

        `video` is the file's bytes or path; `name` names it in errors. Up to 36 MB it goes inline with the request;
        up to 200 MB as an asset, deleted at the service once embedded. The service embeds the options configured
        (visual and audio by default); a segment's vector is the mean of its options' vectors, re-normalised.
        Raises:
            MediaError (naming the file): it is over the upload limit, the service refused it (413 and the like) or
                failed its upload or task, or didn't finish within the task timeout; the service can't be reached,
                keeps rate-limiting, times out or refuses the key. Nothing is returned for a file that fails.
        """
        data = Path(video).read_bytes() if isinstance(video, (str, Path)) else bytes(video)
        if len(data) > self.config.upload_limit_bytes:
            raise MediaError(name, f"is {_mb(len(data))}, more than the {_mb(self.config.upload_limit_bytes)} Twelve "
                             "Labs takes uploaded from this machine")
        if len(data) <= self.config.inline_limit_bytes:
            source = {"base64_string": base64.b64encode(data).decode("ascii")}
            return self._embed_video(source, name, segment_s, len(data), self.config.inline_limit_bytes)
        asset_id = self.api.upload(data, name)
        try:
            return self._embed_video({"asset_id": asset_id}, name, segment_s, len(data), self.config.upload_limit_bytes)
        finally:
            self.api.forget(asset_id)

    def embed_video_file(self, source) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """The vectors and spans of a video read for ingest (a mmcore.media.Source), cut at its segment length;
        asked of the service once per reading of the file, however many batches its segments come in (a failure
        too: the file fails once). Raises MediaError naming the file."""
        with self._videos_lock:  # a reading of a file is one ingest's, in one thread: no two ask for it at once
            found = self._videos.get(source)
        if found is None:
            try:
                found = self.embed_video(source.data, source.name, source.segment_s or 10.0)
            except MediaError as e:
                found = e
            with self._videos_lock:
                self._videos[source] = found
        if isinstance(found, MediaError):
            raise MediaError(source.name, found.reason)
        return found.vectors, found.spans

    def _embed_video(self, source: dict, name: str, segment_s: float, size: int, limit: int) -> SegmentVectors:
        segmentation = {"strategy": "fixed", "fixed": {"duration_sec": max(1, round(segment_s))}}
        body = {"input_type": "video", "video": {
            "media_source": source,
            "segmentation": segmentation if self.config.model == "marengo3.0" else {"temporal": segmentation},
            "embedding_option": list(self.config.video_options),
            "embedding_scope": ["clip"],
        }}
        task = self.api.request("POST", "/embed-v2/tasks", name, size, limit, json=self.api.with_model(body))
        task_id = str(task.get("_id") or "")
        if not task_id:
            raise MediaError(name, "Twelve Labs did not return a task for it")
        return self._segments(self.api.ready(f"/embed-v2/tasks/{task_id}", name, f"task {task_id}"), name)

    def _one(self, body: dict) -> np.ndarray:
        vector = self.api.embed(body)
        self._check_dim(vector.shape[0])
        return vector

    def _stack(self, rows: list[np.ndarray]) -> np.ndarray:
        return normalize(np.stack(rows)) if rows else np.zeros((0, self.info.dim), dtype=np.float32)

    def _check_dim(self, dim: int, name: str | None = None) -> None:
        if dim != self.info.dim:
            reason = f"Twelve Labs returned a {dim}-d vector; this space's vectors are {self.info.dim}-d"
            raise MediaError(name, reason) if name else MMError(reason)

    def _segments(self, task: dict, name: str) -> SegmentVectors:
        by_span: dict[tuple[float, float], list[np.ndarray]] = {}
        for item in task.get("data") or []:
            if item.get("embedding_scope") not in (None, "clip"):
                continue  # a whole-video ("asset") vector, in case the service adds one
            try:
                span = (float(item["start_sec"]), float(item["end_sec"]))
                vector = np.asarray(item["embedding"], dtype=np.float32).reshape(-1)
            except (KeyError, TypeError, ValueError):
                raise MediaError(name, "Twelve Labs returned a segment without its times or vector") from None
            if not np.isfinite(vector).all():
                raise MediaError(name, "Twelve Labs returned a non-finite vector for it")
            self._check_dim(vector.shape[0], name)
            by_span.setdefault(span, []).append(vector)
        if not by_span:
            raise MediaError(name, "Twelve Labs returned no segments for it")
        spans = sorted(by_span)
        means = np.stack([normalize(np.stack(by_span[s])).mean(axis=0) for s in spans])
        return SegmentVectors(normalize(means), spans)


class _Api:
    """Requests to Twelve Labs: the key in a header, rate limits waited out, every failure an MMError without the key."""

    def __init__(self, config: TwelveLabsConfig, sleep: Callable[[float], None]):
        import httpx

        self.config = config
        self.sleep = sleep
        self.http = httpx.Client(
            base_url=config.url.rstrip("/"),
            headers={"x-api-key": config.api_key, "accept": "application/json"},
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
        )

    def close(self) -> None:
        self.http.close()

    def with_model(self, body: dict) -> dict:
        return {"model_name": self.config.model, **body}

    def embed(self, body: dict) -> np.ndarray:
        """The one vector POST /embed-v2 returns for `body` (a text or an image)."""
        answer = self.request("POST", "/embed-v2", json=self.with_model(body))
        try:
            vector = np.asarray(answer["data"][0]["embedding"], dtype=np.float32).reshape(-1)
        except (KeyError, IndexError, TypeError, ValueError):
            raise MMError("Twelve Labs answered without an embedding") from None
        if not vector.size or not np.isfinite(vector).all():
            raise MMError("Twelve Labs returned an empty or non-finite embedding")
        return vector

    def upload(self, data: bytes, name: str) -> str:
        """The id of a new asset holding `data`, once the service has processed it."""
        form = {"method": "direct", "filename": name, "enable_hls": "false", "enable_thumbnail": "false"}
        asset = self.request("POST", "/assets", name, len(data), self.config.upload_limit_bytes,
                             data=form, files={"file": (name, data, "application/octet-stream")})
        asset_id = str(asset.get("_id") or "")
        if not asset_id:
            raise MediaError(name, "Twelve Labs did not return an asset for its upload")
        try:
            if asset.get("status") != "ready":
                self.ready(f"/assets/{asset_id}", name, f"upload {asset_id}")
        except MMError:
            self.forget(asset_id)
            raise
        return asset_id

    def forget(self, asset_id: str) -> None:
        """Delete an uploaded asset at the service. Best effort: its vectors are good whether this works or not."""
        import httpx

        try:
            self.http.request("DELETE", f"/assets/{asset_id}")
        except httpx.HTTPError:
            pass

    def ready(self, path: str, name: str, what: str) -> dict:
        """The task or asset at `path` once ready, looked at every poll_s until task_timeout_s has passed."""
        deadline = time.monotonic() + self.config.task_timeout_s
        while True:
            task = self.request("GET", path, name)
            status = task.get("status")
            if status == "ready":
                return task
            if status == "failed":
                reason = _text((task.get("error") or {}).get("message")) or "it gave no reason"
                raise self._error(f"Twelve Labs could not {'take' if path.startswith('/assets') else 'embed'} it: {reason}", name)
            if time.monotonic() + self.config.poll_s > deadline:
                raise self._error(
                    f"Twelve Labs did not finish embedding it within {self.config.task_timeout_s:g} s ({what} "
                    f"is still {_text(status) or 'unknown'}); try again later or raise MMCORE_TWELVELABS_TASK_TIMEOUT_S",
                    name,
                )
            self.sleep(self.config.poll_s)

    def request(self, method: str, path: str, name: str | None = None, size: int | None = None,
                limit: int | None = None, **content: Any) -> dict:
        """The JSON answer to one request (its body in `content`: json=, or data= and files=), tried again (up to
        `attempts` in all) while rate-limited, and for a GET also after a timeout or a dropped connection (a POST is
        not repeated blindly: it may have made a task). `size` and `limit` of the media sent go into a 413's message.

        Raises:
            MediaError naming `name` when one is given, else MMError.
        """
        import httpx

        for attempt in range(1, self.config.attempts + 1):
            last = attempt == self.config.attempts
            try:
                response = self.http.request(method, path, **content)
            except httpx.TimeoutException:
                if method == "GET" and not last:
                    self._wait(None, attempt)
                    continue
                raise self._error(f"Twelve Labs at {self.config.url} did not answer within {self.config.timeout_s:g} s "
                                  "(raise MMCORE_TWELVELABS_TIMEOUT_S for slow uploads)", name) from None
            except httpx.TransportError as e:
                if method == "GET" and not last:
                    self._wait(None, attempt)
                    continue
                raise self._error(f"could not reach Twelve Labs at {self.config.url} ({type(e).__name__}: {e})", name) from None
            if response.status_code in RETRIED_STATUSES and not last:
                self._wait(response.headers.get("retry-after"), attempt)
                continue
            if response.is_success:
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise self._error(f"Twelve Labs answered {method} {path} with something other than a JSON object", name)
                return answer
            raise self._error(self._refusal(response, size, limit), name)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _refusal(self, response, size: int | None, limit: int | None) -> str:
        status = response.status_code
        said = _service_message(response)
        if status == 413:
            what = f"it is {_mb(size)}, too large" if size is not None else "too large"
            most = f"; it takes at most {_mb(limit)} sent this way" if limit else ""
            return f"Twelve Labs refused it as {what} (HTTP 413{most}){_colon(said)}"
        if status in (401, 403):
            return f"Twelve Labs refused the API key (HTTP {status}){_colon(said)}: check MMCORE_TWELVELABS_API_KEY"
        if status == 429:
            return (f"Twelve Labs kept answering 429 Too Many Requests after {self.config.attempts} tries"
                    f"{_colon(said)}: the key's rate limit is used up; try again later")
        return f"Twelve Labs answered HTTP {status}{_colon(said)}"

    def _wait(self, retry_after: str | None, attempt: int) -> None:
        asked = _retry_after_s(retry_after)
        delay = asked if asked is not None else self.config.backoff_s * 2 ** (attempt - 1)
        self.sleep(min(max(delay, 0.0), self.config.max_wait_s))

    def _error(self, reason: str, name: str | None) -> MMError:
        reason = reason.replace(self.config.api_key, "[API key]")  # a service or library may echo it back
        return MediaError(name, reason) if name else MMError(reason)


def _check_url(url: str) -> None:
    """Refuse a URL that would send the key in clear text to another machine."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise MMError(f"MMCORE_TWELVELABS_URL={url!r} is not an http(s) URL")
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise MMError(f"MMCORE_TWELVELABS_URL={url!r} would send the API key unencrypted; use https "
                      "(plain http is allowed only to this machine)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds to wait: it is a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time() if when.tzinfo else None


def _service_message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _text(response.text)
    if isinstance(body, dict):
        return _text(body.get("message") or body.get("error") or body.get("code"))
    return _text(body)


def _text(value: Any) -> str:
    """A service's words, on one line and short: they go into our messages."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def _colon(said: str) -> str:
    return f": {said}" if said else ""


def _mb(size: int | None) -> str:
    return f"{(size or 0) / 2**20:.1f} MB"


def _jpeg(image) -> bytes:
    from PIL import Image

    image = image.convert("RGB")
    short, long = min(image.size), max(image.size)
    scale = min(max(MIN_IMAGE_SIDE / short, 1.0), MAX_IMAGE_SIDE / long)  # a sliver the service refuses stays one
    if scale != 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    for quality in (90, 75, 60):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= IMAGE_LIMIT_BYTES:
            break
    return buffer.getvalue()


def _config() -> TwelveLabsConfig | None:
    """The configuration in the environment; None when it is off or malformed (loading then says why)."""
    try:
        return TwelveLabsConfig.from_env()
    except MMError:
        return None


def _load(model: str, settings) -> TwelveLabsSpace:
    try:
        config = TwelveLabsConfig.from_env()
    except MMError as e:
        raise ModelUnavailable(f"The Twelve Labs space can't be used: {e}") from None
    if config is None:
        raise ModelUnavailable("The Twelve Labs space is off: set MMCORE_TWELVELABS_API_KEY to use it.")
    return TwelveLabsSpace.load(replace(config, model=model))


def destination() -> str:
    """Where this space's media goes, for people: "Twelve Labs (api.twelvelabs.io)"."""
    config = _config()
    return f"Twelve Labs ({urlparse(config.url if config else DEFAULT_URL).hostname})"


register(SpaceSpec(
    name=SPACE, title="Twelve Labs", variable="MMCORE_TWELVELABS_MODEL", default_model=DEFAULT_MODEL,
    switch="MMCORE_TWELVELABS_API_KEY", load=_load,
    # Video only: a video-native model, sent each video once; images and text stay with the local models.
    modalities=frozenset({"video"}), queries=frozenset({"text", "image"}),
    sends_to=destination, connection=_config,
))
