"""Fetch pretrained files: cache, download with resume, sha256, clear offline errors (``api.md`` §2.4).

Files on ``https://huggingface.co/<repo>/resolve/<rev>`` go through ``huggingface_hub`` (its cache,
``HF_ENDPOINT``, tokens); anything else is streamed with urllib into ``<dst>.partial``, resumed with a
``Range`` request when a partial exists, and moved into place only after its sha256 matches. A file that
is already there is verified too; the result is remembered (keyed by path, size and mtime) under
``$ROOST_HOME/verified`` so a multi-GB file is not hashed on every load.

Before downloading, one ``HEAD`` request gives the server ``Settings.connect_timeout`` seconds to answer
(huggingface_hub alone retries an unreachable endpoint for about 25 s). Offline or unreachable, the error
is one line naming the file, its URL and the path where a copy placed by hand is picked up. Progress is
reported to a callback (:class:`DownloadProgress` events); this module draws nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from roost.errors import ChecksumError, DownloadError, WeightsNotFoundError
from roost.files.atomic import atomic_target, atomic_write, commit_file
from roost.settings import Settings
from roost.weights.manifest import PretrainedEntry

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
TIMEOUT_S = 60.0
_HF_URL = re.compile(r"^https?://(?:huggingface\.co|hf\.co)/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/?$")


@dataclass(frozen=True)
class DownloadProgress:
    """``done`` of ``total`` bytes (None: the server did not say) of the file ``name`` coming from ``url``."""

    name: str
    url: str
    done: int
    total: int | None


ProgressCallback = Callable[[DownloadProgress], None]
"""Called as bytes arrive (first with the bytes already there when a download resumes)."""


def fetch_weights(
    entry: PretrainedEntry,
    fmt: str,
    *,
    dst: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    settings: Settings | None = None,
) -> Path:
    """The local path of ``entry``'s ``fmt`` file, downloaded (and sha256-checked) if needed.

    The file is looked for at ``dst`` (default: the weights cache), then in the Hugging Face cache for
    files published there; only then is the network used.
    """
    settings = settings or Settings.from_env()
    expected = entry.sha256(fmt)
    target = Path(dst) if dst is not None else settings.weights_dir / entry.file_name(fmt)
    if target.exists() and _accept_existing(target, expected, settings, owned=dst is None):
        return target
    hf = parse_hf_url(entry.url)
    if hf is not None:
        path = _fetch_hf(entry, fmt, hf, target, on_progress, settings)
        if dst is None:
            return path
        with atomic_target(target) as tmp:
            shutil.copyfile(path, tmp)
    else:
        url = entry.file_url(fmt)
        _require_reachable(entry, fmt, url, target, settings)
        download_file(url, target, expected, on_progress=on_progress)
    _remember(target, expected, settings)
    return target


def _accept_existing(path: Path, expected: str, settings: Settings, *, owned: bool) -> bool:
    actual = verified_sha256(path, expected, settings)
    if actual == expected:
        return True
    if not owned:
        raise ChecksumError(
            f"{path} exists but its sha256 is {actual}, expected {expected}; delete it or choose another dst"
        )
    log.warning("cached %s has sha256 %s, expected %s: downloading it again", path, actual, expected)
    path.unlink()
    return False


# Failing fast: offline, or a server that does not answer


def _require_reachable(entry: PretrainedEntry, fmt: str, url: str, target: Path, settings: Settings) -> None:
    """Raise, saying where to place the file by hand, when downloads are off or ``url``'s server is silent."""
    if settings.offline:
        why = "downloads are off (ROOST_OFFLINE or HF_HUB_OFFLINE)"
        raise WeightsNotFoundError(_place_by_hand(entry, fmt, entry.file_url(fmt), target, why))
    reason = unreachable(url, settings.connect_timeout)
    if reason is not None:
        why = f"cannot reach {urlsplit(url).netloc} ({reason})"
        raise DownloadError(_place_by_hand(entry, fmt, url, target, why))


def _place_by_hand(entry: PretrainedEntry, fmt: str, url: str, target: Path, why: str) -> str:
    return (
        f"{entry.file_name(fmt)} is not on disk and {why}. "
        f"Download {url} and place it at {target} (sha256 {entry.sha256(fmt)})."
    )


def unreachable(url: str, timeout: float) -> str | None:
    """Why ``url``'s server gives no HTTP answer within ``timeout`` seconds; None when it answers.

    Any status is an answer (a 404, a redirect). The request runs in a daemon thread so that a name
    lookup that hangs (no DNS server) is cut off at ``timeout`` too.
    """
    outcome: list[str | None] = []
    probe = threading.Thread(target=lambda: outcome.append(_head(url, timeout)), daemon=True)
    probe.start()
    probe.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect already shows the server answers: it becomes an ``HTTPError`` instead of being followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _head(url: str, timeout: float) -> str | None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": _user_agent()})
    try:
        urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout).close()
    except urllib.error.HTTPError as err:
        err.close()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        return str(getattr(err, "reason", err))
    return None


# Verification, with a small record of files already checked


def sha256sum(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _record_path(path: Path, settings: Settings) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return settings.home / "verified" / f"{key}.json"


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verified_sha256(path: Path, expected: str, settings: Settings) -> str:
    """``path``'s sha256: ``expected`` straight from the record when the file is unchanged since it was
    last verified, otherwise hashed now (and recorded when it matches)."""
    record = _record_path(path, settings)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(record.read_text()) == {**_fingerprint(path), "sha256": expected}:
            return expected
    actual = sha256sum(path)
    if actual == expected:
        _remember(path, expected, settings)
    return actual


def _remember(path: Path, sha256: str, settings: Settings) -> None:
    record = _record_path(path, settings)
    try:
        atomic_write(record, json.dumps({**_fingerprint(path), "sha256": sha256}).encode())
    except OSError as err:  # a read-only cache only costs a re-hash next time
        log.debug("cannot record verification of %s: %s", path, err)


# Plain HTTP(S)


def download_file(
    url: str, dst: str | os.PathLike[str], expected_sha256: str, *, on_progress: ProgressCallback | None = None
) -> Path:
    """Stream ``url`` to ``dst`` through ``<dst>.partial`` (resumed if present); check sha256 first."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    actual = _stream(url, partial, on_progress)
    if actual != expected_sha256.lower():
        partial.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch for {url}: expected {expected_sha256}, got {actual}; the download was discarded"
        )
    commit_file(partial, dst)
    return dst


def _user_agent() -> str:
    import roost  # deferred: roost/__init__ imports this module

    return f"roost/{roost.__version__}"


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise WeightsNotFoundError(f"{url} does not exist (HTTP {err.code})") from err
        raise DownloadError(f"downloading {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot reach {url}: {reason}") from err


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match[1]) if match else None


def _stream(url: str, partial: Path, on_progress: ProgressCallback | None) -> str:
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = _open(url, offset)
    except DownloadError as err:
        if offset and isinstance(err.__cause__, urllib.error.HTTPError) and err.__cause__.code == 416:
            partial.unlink()  # the partial is not a prefix of this file: start again
            return _stream(url, partial, on_progress)
        raise
    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        offset = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        digest = _hash_prefix(partial, offset)
        report = _reporter(url, total, on_progress)
        report(offset)
        with open(partial, "ab" if resumed else "wb") as out:
            received = _copy(response, out, digest, url, offset, report)
    if total is not None and received < total:
        raise DownloadError(
            f"download of {url} stopped at {received} of {total} bytes; {partial} is kept and the next "
            "attempt resumes it"
        )
    return digest.hexdigest()


def _hash_prefix(partial: Path, offset: int) -> Any:
    digest = hashlib.sha256()
    if offset:
        with open(partial, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest


def _copy(response: Any, out: Any, digest: Any, url: str, done: int, report: Callable[[int], None]) -> int:
    """Append the body to ``out`` and ``digest``; the byte count reached from ``done`` already there."""
    try:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            report(done)
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(
            f"download of {url} was interrupted ({err!r}); the partial file is kept and the next attempt resumes it"
        ) from err
    return done


def _reporter(url: str, total: int | None, on_progress: ProgressCallback | None) -> Callable[[int], None]:
    if on_progress is None:
        return lambda done: None
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return lambda done: on_progress(DownloadProgress(name, url, done, total))


# Hugging Face


def parse_hf_url(url: str) -> tuple[str, str] | None:
    """``(repo_id, revision)`` of a ``https://huggingface.co/<repo>/resolve/<rev>`` folder URL."""
    match = _HF_URL.match(url)
    return (match["repo"], unquote(match["rev"])) if match else None


def _fetch_hf(
    entry: PretrainedEntry,
    fmt: str,
    hf: tuple[str, str],
    target: Path,
    on_progress: ProgressCallback | None,
    settings: Settings,
) -> Path:
    """Through the HF cache: a cached file with the right sha256 needs no network; otherwise it is
    downloaded (again, when the cached one is damaged)."""
    expected = entry.sha256(fmt)
    cached = _hf_cached(entry, fmt, hf, settings)
    if cached is not None and verified_sha256(cached, expected, settings) == expected:
        return cached
    _require_reachable(entry, fmt, _hf_file_url(entry, fmt, hf, settings), target, settings)
    path = _hf_download(entry, fmt, hf, on_progress, settings, force=cached is not None)
    actual = verified_sha256(path, expected, settings)
    if actual != expected:
        raise ChecksumError(
            f"sha256 mismatch for {entry.file_url(fmt)} (Hugging Face cache file {path}): "
            f"expected {expected}, got {actual}"
        )
    return path


def _hf_cached(entry: PretrainedEntry, fmt: str, hf: tuple[str, str], settings: Settings) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    repo_id, revision = hf
    found = try_to_load_from_cache(repo_id, entry.file_name(fmt), cache_dir=settings.hf_cache, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _hf_file_url(entry: PretrainedEntry, fmt: str, hf: tuple[str, str], settings: Settings) -> str:
    """The URL huggingface_hub asks (``HF_ENDPOINT`` taken into account)."""
    from huggingface_hub import hf_hub_url

    repo_id, revision = hf
    return hf_hub_url(repo_id, entry.file_name(fmt), revision=revision, endpoint=settings.hf_endpoint)


def _hf_download(
    entry: PretrainedEntry,
    fmt: str,
    hf: tuple[str, str],
    on_progress: ProgressCallback | None,
    settings: Settings,
    *,
    force: bool,
) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo_id, revision = hf
    name = entry.file_name(fmt)
    try:
        path = hf_hub_download(
            repo_id,
            name,
            revision=revision,
            cache_dir=settings.hf_cache,
            endpoint=settings.hf_endpoint,
            force_download=force,
            tqdm_class=_tqdm_forwarder(name, _hf_file_url(entry, fmt, hf, settings), on_progress),
            library_name="roost",
        )
    except LocalEntryNotFoundError as err:  # the endpoint stopped answering after the first check
        raise DownloadError(f"cannot download {entry.file_url(fmt)}: {err}") from err
    except EntryNotFoundError as err:
        raise WeightsNotFoundError(f"{entry.file_url(fmt)} does not exist: {err}") from err
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code in (401, 403, 404):
            raise WeightsNotFoundError(f"{entry.file_url(fmt)} is not available: {err}") from err
        raise DownloadError(f"downloading {entry.file_url(fmt)} failed: {err}") from err
    except OSError as err:
        raise DownloadError(f"downloading {entry.file_url(fmt)} failed: {err}") from err
    return Path(path)


def _tqdm_forwarder(name: str, url: str, on_progress: ProgressCallback | None) -> type:
    """A tqdm class for huggingface_hub that draws nothing and hands its counts to ``on_progress``."""
    from tqdm import tqdm

    class Forwarder(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)  # huggingface_hub names its own bars; plain tqdm rejects the keyword
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            if on_progress is not None:
                total = int(self.total) if self.total else None
                on_progress(DownloadProgress(name, url, int(self.n), total))
            return None

    return Forwarder
