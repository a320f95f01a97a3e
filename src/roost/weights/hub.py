"""Fetch pretrained files: cache, download with resume, sha256, clear offline errors (``api.md`` §2.4).

Files on ``https://huggingface.co/<repo>/resolve/<rev>`` go through ``huggingface_hub`` (its cache,
``HF_ENDPOINT``, tokens); anything else is streamed with urllib into ``<dst>.partial``, resumed with a
``Range`` request when a partial exists, and moved into place only after its sha256 matches. A file that
is already there is verified too; the result is remembered (keyed by path, size and mtime) under
``$ROOST_HOME/verified`` so a multi-GB file is not hashed on every load.
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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from roost.errors import ChecksumError, DownloadError, WeightsNotFoundError
from roost.settings import Settings
from roost.weights.checkpoint import atomic_target
from roost.weights.manifest import PretrainedEntry

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
TIMEOUT_S = 60.0
_HF_URL = re.compile(r"^https?://(?:huggingface\.co|hf\.co)/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/?$")


def fetch_weights(
    entry: PretrainedEntry,
    fmt: str,
    *,
    dst: str | os.PathLike[str] | None = None,
    progress: bool = True,
    settings: Settings | None = None,
) -> Path:
    """The local path of ``entry``'s ``fmt`` file, downloaded (and sha256-checked) if needed."""
    settings = settings or Settings.from_env()
    expected = entry.sha256(fmt)
    target = Path(dst) if dst is not None else settings.weights_dir / entry.file_name(fmt)
    if target.exists() and _accept_existing(target, expected, settings, owned=dst is None):
        return target
    hf = parse_hf_url(entry.url)
    if hf is not None:
        path = _fetch_hf(entry, fmt, hf, target, progress, settings)
        if dst is None:
            return path
        with atomic_target(target) as tmp:
            shutil.copyfile(path, tmp)
    elif settings.offline:
        raise _offline_error(entry, fmt, target)
    else:
        download_file(entry.file_url(fmt), target, expected, progress=progress)
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


def _offline_error(entry: PretrainedEntry, fmt: str, target: Path) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{entry.file_name(fmt)} is not on disk and downloads are off (ROOST_OFFLINE or HF_HUB_OFFLINE). "
        f"Download {entry.file_url(fmt)} and place it at {target} (sha256 {entry.sha256(fmt)})."
    )


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
        with atomic_target(record) as tmp:
            tmp.write_text(json.dumps({**_fingerprint(path), "sha256": sha256}))
    except OSError as err:  # a read-only cache only costs a re-hash next time
        log.debug("cannot record verification of %s: %s", path, err)


# Plain HTTP(S)


def download_file(
    url: str, dst: str | os.PathLike[str], expected_sha256: str, *, progress: bool = True
) -> Path:
    """Stream ``url`` to ``dst`` through ``<dst>.partial`` (resumed if present); check sha256 first."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    actual = _stream(url, partial, progress)
    if actual != expected_sha256.lower():
        partial.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch for {url}: expected {expected_sha256}, got {actual}; the download was discarded"
        )
    os.replace(partial, dst)
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


def _stream(url: str, partial: Path, progress: bool) -> str:
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = _open(url, offset)
    except DownloadError as err:
        if offset and isinstance(err.__cause__, urllib.error.HTTPError) and err.__cause__.code == 416:
            partial.unlink()  # the partial is not a prefix of this file: start again
            return _stream(url, partial, progress)
        raise
    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        offset = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        digest = _hash_prefix(partial, offset)
        with open(partial, "ab" if resumed else "wb") as out, _progress_bar(url, total, offset, progress) as bar:
            received = offset + _copy(response, out, digest, bar, url)
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


def _copy(response: Any, out: Any, digest: Any, advance: Callable[[int], None], url: str) -> int:
    received = 0
    try:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            advance(len(chunk))
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(
            f"download of {url} was interrupted ({err!r}); the partial file is kept and the next attempt resumes it"
        ) from err
    return received


@contextlib.contextmanager
def _progress_bar(url: str, total: int | None, done: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(url.rsplit("/", 1)[-1], total=total, completed=done)
        yield lambda n: bar.advance(task, n)


# Hugging Face


def parse_hf_url(url: str) -> tuple[str, str] | None:
    """``(repo_id, revision)`` of a ``https://huggingface.co/<repo>/resolve/<rev>`` folder URL."""
    match = _HF_URL.match(url)
    return (match["repo"], unquote(match["rev"])) if match else None


def _fetch_hf(
    entry: PretrainedEntry, fmt: str, hf: tuple[str, str], target: Path, progress: bool, settings: Settings
) -> Path:
    """Download through the HF cache; a cached file with the wrong sha256 is fetched once more."""
    expected = entry.sha256(fmt)
    path = _hf_download(entry, fmt, hf, target, progress, settings, force=False)
    actual = verified_sha256(path, expected, settings)
    if actual != expected and not settings.offline:
        path = _hf_download(entry, fmt, hf, target, progress, settings, force=True)
        actual = verified_sha256(path, expected, settings)
    if actual != expected:
        raise ChecksumError(
            f"sha256 mismatch for {entry.file_url(fmt)} (Hugging Face cache file {path}): "
            f"expected {expected}, got {actual}"
        )
    return path


def _hf_download(
    entry: PretrainedEntry,
    fmt: str,
    hf: tuple[str, str],
    target: Path,
    progress: bool,
    settings: Settings,
    *,
    force: bool,
) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo_id, revision = hf
    try:
        path = hf_hub_download(
            repo_id,
            entry.file_name(fmt),
            revision=revision,
            cache_dir=settings.hf_cache,
            endpoint=settings.hf_endpoint,
            local_files_only=settings.offline,
            force_download=force,
            tqdm_class=None if progress else _silent_tqdm(),
            library_name="roost",
        )
    except LocalEntryNotFoundError as err:
        if settings.offline:
            raise _offline_error(entry, fmt, target) from err
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


def _silent_tqdm() -> type:
    from tqdm import tqdm

    class SilentTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    return SilentTqdm
