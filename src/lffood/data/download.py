"""Downloads that are atomic, resumable and verified.

* The bytes go to ``<dest>.part``; only a complete, verified file is renamed to ``dest``, so a file
  at ``dest`` is always complete and an interrupted or corrupt download never looks finished.
* An interrupted download resumes from the ``.part`` file with an HTTP ``Range`` request when the
  server honours it (206), and restarts from zero when it does not (200).
* Verification: the published md5 where there is one; otherwise the sha256 recorded in the lock file
  (``downloads.lock_file``) on first download, and checked on every later download or re-run.
* A file already at ``dest`` that verifies is never downloaded again (placing a file there by hand
  is how to run offline). Failures end with a :class:`~lffood.errors.DataError` naming the URL and
  the path to place the file at by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..io import atomic_path
from . import sources

log = logging.getLogger("lffood.download")

LOCK_VERSION = 1
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- checksums
def file_digest(path: str | os.PathLike, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def read_lock(path: str | os.PathLike) -> dict:
    """``{key: {filename, sha256, size, url}}`` from the lock file (empty when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: the checksum lock file is not valid JSON ({exc}). Restore it from git "
                        f"(git checkout -- {path}) or delete it to record checksums afresh.") from exc
    return dict(data.get("files", {}))


@contextlib.contextmanager
def _dir_lock(directory: Path):
    """An exclusive flock on a directory: parallel download jobs update the lock file one at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def record_lock(path: str | os.PathLike, key: str, entry: Mapping) -> None:
    """Add or replace one entry of the lock file (atomic rewrite under a directory lock)."""
    path = Path(path)
    with _dir_lock(path.parent):
        files = read_lock(path)
        files[key] = dict(entry)
        text = json.dumps({"version": LOCK_VERSION,
                           "comment": "sha256 of downloads with no published checksum, recorded on first "
                                      "download by lffood.data.download and verified afterwards",
                           "files": dict(sorted(files.items()))}, indent=2) + "\n"
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(text)


@dataclass
class Expected:
    """What a file must hash to: a published md5, or the lock file entry ``lock_key``."""
    md5: str | None = None
    lock_file: str | None = None
    lock_key: str | None = None

    def describe(self, lock: Mapping | None = None) -> str:
        if self.md5:
            return f"md5 {self.md5}"
        entry = (lock or {}).get(self.lock_key)
        if entry:
            return f"sha256 {entry['sha256']} (recorded in {self.lock_file})"
        return f"no published checksum; its sha256 is recorded in {self.lock_file} on first download"


def verify(path: str | os.PathLike, expected: Expected, *, url: str = "", record: bool = True) -> str:
    """Check ``path`` against ``expected``; returns a short description of what was checked.

    Without a published md5 and with no lock entry yet, records the file's sha256 (``record``)."""
    path = Path(path)
    if expected.md5:
        got = file_digest(path, "md5")
        if got != expected.md5:
            raise DataError(f"{path}: checksum mismatch: md5 is {got}, expected {expected.md5}"
                            + (f" (source {url})" if url else "") + ".")
        return f"md5 {got} ok"
    if not expected.lock_file or not expected.lock_key:
        return "no checksum"
    entry = read_lock(expected.lock_file).get(expected.lock_key)
    got = file_digest(path, "sha256")
    if entry is None:
        if record:
            record_lock(expected.lock_file, expected.lock_key,
                        {"filename": path.name, "sha256": got, "size": path.stat().st_size, "url": url})
            log.info("%s: no published checksum; recorded sha256 %s in %s", path, got, expected.lock_file)
        return f"sha256 {got} recorded"
    if got != entry["sha256"]:
        raise DataError(f"{path}: checksum mismatch: sha256 is {got}, but {expected.lock_file} recorded "
                        f"{entry['sha256']} for '{expected.lock_key}' on its first download"
                        + (f" (source {url})" if url else "") + ". If the upstream file changed on purpose, "
                        f"remove the '{expected.lock_key}' entry from {expected.lock_file} and re-run.")
    return f"sha256 {got} ok (lock)"


# ----------------------------------------------------------------------------- HTTP
def _manual_hint(url: str, dest: Path, expected: Expected) -> str:
    lock = read_lock(expected.lock_file) if expected.lock_file else {}
    return (f"Download {url} on a machine with internet access and place it at {dest} "
            f"(expected {expected.describe(lock)}), then re-run; an existing verified file is never downloaded again.")


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """One HTTP attempt: resume ``part`` with a Range request if it has bytes, else start from zero."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "lffood-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part already holds every byte
            log.info("%s: server says the partial file is complete (416)", part)
            return
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if have and status == 206:
            mode = "ab"
            log.info("resuming %s at byte %d", url, have)
        else:
            if have:
                log.info("server ignored the Range request (HTTP %s): restarting %s from zero", status, url)
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        got = have
        next_report = time.monotonic() + 10
        with open(part, mode) as fh:
            while block := resp.read(_CHUNK):
                fh.write(block)
                got += len(block)
                if time.monotonic() > next_report:
                    log.info("%s: %.1f MB%s", part.name, got / 1e6, f" of {total / 1e6:.1f} MB" if total else "")
                    next_report = time.monotonic() + 10
        if total is not None and got < total:
            raise http.client.IncompleteRead(b"", total - got)


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, TimeoutError)


def download(url: str, dest: str | os.PathLike, expected: Expected | None = None, *, timeout: float = 60,
             retries: int = 3, backoff: float = 2.0) -> Path:
    """Make ``dest`` a verified copy of ``url``; no network access when it already is one."""
    dest = Path(dest)
    expected = expected or Expected()
    if dest.exists():
        try:
            what = verify(dest, expected, url=url)
        except DataError as exc:
            raise DataError(f"{exc} The file at {dest} was not downloaded by this run (downloads are only "
                            f"renamed into place after verification): it was placed by hand or the upstream "
                            f"file changed. Delete {dest} to download it again, or replace it with the "
                            f"correct file.") from None
        log.info("%s already present, %s: not downloading", dest, what)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    restarted = False
    attempt = 0
    while attempt <= retries:
        attempt += 1
        try:
            log.info("downloading %s -> %s (attempt %d of %d)", url, dest, attempt, retries + 1)
            resumed = part.exists() and part.stat().st_size > 0
            _fetch_once(url, part, timeout)
        except urllib.error.HTTPError as exc:
            last_error = exc
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break  # not found, forbidden...: retrying will not help
        except _NETWORK_ERRORS as exc:
            last_error = exc
        else:
            try:
                what = verify(part, expected, url=url)
            except DataError as exc:
                part.unlink(missing_ok=True)
                if resumed and not restarted:  # a stale .part may be the culprit: one fresh attempt
                    log.warning("%s; the download was resumed from an earlier partial file, so it is "
                                "downloaded once more from zero", exc)
                    restarted = True
                    attempt -= 1
                    continue
                raise DataError(f"{exc} The download was deleted; nothing was written at {dest}. If this "
                                f"repeats, the source is corrupt or has changed: "
                                + _manual_hint(url, dest, expected)) from None
            os.replace(part, dest)
            log.info("downloaded %s (%d bytes), %s", dest, dest.stat().st_size, what)
            return dest
        if attempt <= retries:
            wait = backoff * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retrying in %.0f s", url, last_error, wait)
            time.sleep(wait)
    kept = (f" The partial file {part} ({part.stat().st_size} bytes) is kept and resumed by the next run."
            if part.exists() and part.stat().st_size else "")
    raise DataError(f"could not download {url}: {last_error}.{kept} " + _manual_hint(url, dest, expected))


# ----------------------------------------------------------------------------- registry glue
@dataclass(frozen=True)
class Spec:
    url: str
    filename: str
    md5: str | None


def torchvision_spec(key: str) -> Spec:
    """URL, file name and md5 of a torchvision-backed archive, read from the dataset class itself."""
    import torchvision.datasets as tvd

    a = sources.archive(key)
    cls = getattr(tvd, a.torchvision)
    if a.kind == "cifar":
        return Spec(cls.url, cls.filename, cls.tgz_md5)
    if a.kind == "svhn":
        url, filename, md5 = cls.split_list["test"]
        return Spec(url, filename, md5)
    raise ValueError(f"{key}: not a torchvision archive")


def spec(key: str) -> Spec:
    a = sources.archive(key)
    if a.torchvision:
        s = torchvision_spec(key)
        if s.filename != a.filename:
            raise DataError(f"torchvision.datasets.{a.torchvision} now names its file {s.filename!r}, but "
                            f"lffood.data.sources registers {a.filename!r} for '{key}'. Update the registry.")
        return s
    return Spec(a.url, a.filename, a.md5)


def expected_for(key: str, downloads: Mapping) -> Expected:
    s = spec(key)
    return Expected(md5=s.md5, lock_file=None if s.md5 else downloads["lock_file"], lock_key=key)


def url_for(cfg: Mapping, key: str) -> str:
    """``downloads.urls.<key>`` when set, else the registry's (torchvision's) URL."""
    return (cfg["downloads"].get("urls") or {}).get(key) or spec(key).url


def fetch_archive(cfg: Mapping, key: str, receipt: str | os.PathLike | None = None) -> Path:
    """Download (or verify an existing copy of) the archive ``key`` as the validated config says;
    optionally write a JSON receipt (what was verified) to ``receipt``."""
    dl = cfg["downloads"]
    url = url_for(cfg, key)
    dest = Path(sources.archive_path(cfg, key))
    expected = expected_for(key, dl)
    download(url, dest, expected, timeout=dl["timeout_s"], retries=dl["retries"])
    if receipt is not None:
        entry = read_lock(dl["lock_file"]).get(key, {}) if expected.lock_file else {}
        info = {"archive": key, "path": str(dest), "url": url, "size": dest.stat().st_size,
                "md5": expected.md5, "sha256_lock": entry.get("sha256")}
        with atomic_path(receipt) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
    return dest


def describe_sources(cfg: Mapping) -> str:
    """A table of every archive: key, URL, checksum, where to place it by hand (``lffood download --list``)."""
    lock = read_lock(cfg["downloads"]["lock_file"])
    lines = []
    for key, a in sources.ARCHIVES.items():
        if a.md5:
            ck = f"md5 {a.md5} ({a.checksum_source})"
        elif key in lock:
            ck = f"sha256 {lock[key]['sha256']} (lock file)"
        else:
            ck = "no published checksum: sha256 recorded in the lock file on first download"
        lines.append(f"{key}\n  {a.description}\n  url:   {sources.archive_url(cfg, key)}\n  check: {ck}\n"
                     f"  place: {sources.archive_path(cfg, key)}")
    return "\n".join(lines)
