"""Downloads that are atomic, resumable, verified and only go where they are allowed to.

* The bytes go to ``<dest>.part``; only a complete, verified file is renamed to ``dest``, so a file
  at ``dest`` is always complete and an interrupted or corrupt download never looks finished.
* An interrupted download resumes from the ``.part`` file with an HTTP ``Range`` request when the
  server honours it (206), and restarts from zero when it does not (200).
* Verification: the published md5 where there is one; otherwise the sha256 recorded in the lock file
  (``downloads.lock_file``) on first download, and checked on every later download or re-run. The
  first download of such a file is trusted on first use: a WARNING gives its sha256 and asks for the
  lock file to be committed; the lock entry names the final file (never the ``.part``).
* Transport (:class:`UrlPolicy`): registry URLs are https (plain http only for an archive marked
  ``http_only`` in :mod:`lffood.data.sources`, i.e. whose host serves no https). Redirects are followed
  only to the URL's own host or the archive's ``redirect_hosts``, and never from https to http. A URL
  the user names in ``downloads.urls.<key>`` (a mirror) may be https, http or ``file://`` (a local
  copy); its redirects may only stay on its own host. Every other scheme (ftp://, data:, ...) is
  refused, mirror or not.
* Plain http and ``file://`` carry no protection of their own, so they are used only for an archive
  whose checksum is pinned before the download: a published md5 (it fixes the bytes as well as a
  pin does), one the user names in ``downloads.checksums.<key>``, or an entry already in the lock
  file. Trust on first use happens only over https: without a pin, an http or file:// source is
  refused before anything is fetched, naming both ways to pin the checksum.
* Limits (:func:`size_limit`, :func:`deadline_for`): a download stops once it passes the archive's
  expected size plus a margin (``sources.SIZE_MARGIN``; the size recorded in the lock file once there
  is one; ``downloads.max_bytes.<key>`` overrides both), already from the announced Content-Length,
  and the partial file is deleted. Each attempt has a total deadline (``downloads.deadline_s``, by
  default long enough to fetch the size limit at :data:`DEADLINE_MIN_RATE`), enforced between reads
  and by a watchdog that shuts the connection down, so a server that trickles bytes (or headers)
  cannot hold a job; the next attempt resumes the partial file.
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
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DataError
from ..io import atomic_path
from . import sources

log = logging.getLogger("lffood.download")

LOCK_VERSION = 1
_CHUNK = 1 << 20
#: Default deadline of one download attempt: the time to fetch the archive's size limit at this rate
#: (bytes/s, 4 Mbit/s), and never less than :data:`DEADLINE_FLOOR_S`. A slower link still gets the
#: file: every retry resumes the partial file (or set ``downloads.deadline_s``).
DEADLINE_MIN_RATE = 500_000
DEADLINE_FLOOR_S = 600.0
#: Deadline of an attempt when neither a deadline nor a size limit is given.
DEADLINE_DEFAULT_S = 3600.0


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
                           "comment": "sha256 of downloads with no published checksum, trusted on first use: "
                                      "recorded on first download by lffood.data.download and verified "
                                      "afterwards. Commit this file.",
                           "files": dict(sorted(files.items()))}, indent=2) + "\n"
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(text)


def pin_line(key: str, checksum: str) -> str:
    """The config line that pins ``checksum`` ("sha256:<hex>" / "md5:<hex>") for the archive ``key``."""
    return f'downloads: {{checksums: {{{key}: "{checksum}"}}}}'


@dataclass
class Expected:
    """What a file must hash to: a published md5, a sha256 pinned in the config, or the lock file
    entry ``lock_key``."""
    md5: str | None = None
    lock_file: str | None = None
    lock_key: str | None = None
    sha256: str | None = None

    def describe(self, lock: Mapping | None = None) -> str:
        if self.md5:
            return f"md5 {self.md5}"
        if self.sha256:
            return f"sha256 {self.sha256} (pinned in downloads.checksums)"
        entry = (lock or {}).get(self.lock_key)
        if entry:
            return f"sha256 {entry['sha256']} (recorded in {self.lock_file})"
        return f"no published checksum; its sha256 is recorded in {self.lock_file} on first download"


def verify(path: str | os.PathLike, expected: Expected, *, url: str = "", record: bool = True,
           final: str | os.PathLike | None = None) -> str:
    """Check ``path`` against ``expected``; returns a short description of what was checked.

    Without a published md5 and with no lock entry yet, records the file's sha256 (``record``) under
    the name of ``final`` (where the file will live; ``path`` itself by default, a ``.part`` file is
    never recorded) and warns that the file is trusted on first use."""
    path = Path(path)
    final = Path(final) if final is not None else path
    if expected.md5:
        got = file_digest(path, "md5")
        if got != expected.md5:
            raise DataError(f"{path}: checksum mismatch: md5 is {got}, expected {expected.md5}"
                            + (f" (source {url})" if url else "") + ".")
        return f"md5 {got} ok"
    if expected.sha256:
        got = file_digest(path, "sha256")
        if got != expected.sha256:
            raise DataError(f"{path}: checksum mismatch: sha256 is {got}, expected {expected.sha256} (pinned in "
                            f"downloads.checksums.{expected.lock_key})" + (f" (source {url})" if url else "") + ".")
        return f"sha256 {got} ok (pinned)"
    if not expected.lock_file or not expected.lock_key:
        return "no checksum"
    entry = read_lock(expected.lock_file).get(expected.lock_key)
    got = file_digest(path, "sha256")
    if entry is None:
        if record:
            record_lock(expected.lock_file, expected.lock_key,
                        {"filename": final.name, "path": str(final), "sha256": got, "size": path.stat().st_size,
                         "url": url, "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
            log.warning("TRUST ON FIRST USE: '%s' (%s) has no published checksum, so this copy is trusted on "
                        "first use without any check: its sha256 %s is now recorded in %s, and every later "
                        "download or re-run must match it. Pin it so that other machines and later runs are "
                        "held to the same file: Commit %s (git add %s && git commit -m 'pin %s'), or put this "
                        "line in your config: %s",
                        expected.lock_key, final, got, expected.lock_file, expected.lock_file,
                        expected.lock_file, expected.lock_key, pin_line(expected.lock_key, f"sha256:{got}"))
        return f"sha256 {got} recorded (trusted on first use)"
    if got != entry["sha256"]:
        raise DataError(f"{path}: checksum mismatch: sha256 is {got}, but {expected.lock_file} recorded "
                        f"{entry['sha256']} for '{expected.lock_key}' on its first download"
                        + (f" (source {url})" if url else "") + ". If the upstream file changed on purpose, "
                        f"remove the '{expected.lock_key}' entry from {expected.lock_file} and re-run.")
    return f"sha256 {got} ok (lock)"


def is_pinned(expected: Expected) -> bool:
    """Whether the bytes are fixed before the download: a published or pinned checksum, or a lock entry."""
    if expected.md5 or expected.sha256:
        return True
    return bool(expected.lock_file and expected.lock_key and expected.lock_key in read_lock(expected.lock_file))


# ----------------------------------------------------------------------------- where a download may go
@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs a download of one archive may use. The default is the strictest: https only, and
    redirects only within the URL's own host.

    ``key`` names the archive in errors (and so the config key ``downloads.urls.<key>``);
    ``redirect_hosts`` are the other hosts a redirect may lead to (``*.x.org`` = any subdomain of x.org);
    ``allow_http`` admits plain http (a host with no https, or a URL the user named); ``mirror`` marks a
    URL the user named in ``downloads.urls.<key>``, which may also be ``file://``."""
    key: str = ""
    redirect_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    mirror: bool = False

    @property
    def config_key(self) -> str:
        return f"downloads.urls.{self.key or '<archive key>'}"


def policy_for(cfg: Mapping, key: str) -> UrlPolicy:
    """The policy of archive ``key``: a mirror's when ``downloads.urls.<key>`` is set, else the registry's."""
    if sources.mirror_url(cfg, key):
        return UrlPolicy(key=key, allow_http=True, mirror=True)
    a = sources.archive(key)
    return UrlPolicy(key=key, redirect_hosts=tuple(a.redirect_hosts), allow_http=a.http_only)


def host_allowed(host: str, patterns) -> bool:
    """``host`` equals a pattern, or is a subdomain of ``x.org`` for a pattern ``*.x.org`` (case-insensitive)."""
    host = host.lower().rstrip(".")
    for p in patterns:
        p = p.lower().rstrip(".")
        if p.startswith("*.") and host.endswith(p[1:]) and len(host) > len(p) - 1:
            return True
        if host == p:
            return True
    return False


def check_url(url: str, policy: UrlPolicy) -> str:
    """Refuse a URL whose scheme ``policy`` does not allow; returns the scheme."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return scheme
    if scheme == "http" and (policy.allow_http or policy.mirror):
        return scheme
    if scheme == "file" and policy.mirror:
        return scheme
    if scheme == "http":
        https = urllib.parse.urlunsplit(("https", *parts[1:]))
        why = (f"plain http is refused because the source offers https: use {https} "
               f"or, for a mirror you trust, name it in {policy.config_key}")
    elif scheme == "file":
        why = (f"file:// is only accepted when you name it yourself as a local mirror in {policy.config_key}")
    else:
        why = (f"only https, http and (for a mirror named in {policy.config_key}) file:// are supported. "
               f"Fetch the file with another tool and place it by hand, or name an https/http/file:// mirror "
               f"in {policy.config_key}")
    raise DataError(f"refusing to download {url}: {scheme or 'no'} scheme; {why}.")


def check_pinned(url: str, scheme: str, expected: Expected, policy: UrlPolicy) -> None:
    """Refuse plain http or ``file://`` for a file whose checksum is not pinned (:func:`is_pinned`):
    trust on first use happens only over https."""
    if scheme == "https" or is_pinned(expected):
        return
    key = policy.key or expected.lock_key or "<archive key>"
    lock = expected.lock_file or "the lock file (downloads.lock_file)"
    where = "a file:// source" if scheme == "file" else "plain http"
    raise DataError(
        f"refusing to download '{key}' from {url}: {where} carries no protection of its own, so it is only "
        f"used for an archive whose checksum is pinned before the download, and '{key}' has none (no "
        f"published checksum, nothing in downloads.checksums.{key}, no entry in {lock}); trust on first use "
        f"happens only over https. Pin it either way: (1) in your config, the checksum of the file you trust "
        f"({pin_line(key, 'sha256:<64 hex digits>')}; sha256sum <file> prints it), or (2) download it once "
        f"over https (the registry's URL, or an https mirror in {policy.config_key}): its sha256 is recorded "
        f"in {lock}, and this source is accepted from then on and checked against it.")


def check_redirect(policy: UrlPolicy, origin: str, current: str, target: str) -> None:
    """Refuse a redirect from ``current`` (reached from ``origin``) to ``target`` that leaves the
    allowed hosts, downgrades https to http, or changes to any other scheme."""
    old, new = urllib.parse.urlsplit(current), urllib.parse.urlsplit(target)
    scheme = new.scheme.lower()
    problem = None
    if scheme not in ("http", "https"):
        problem = f"the target's scheme {scheme or '(none)'}:// is not http(s)"
    elif old.scheme.lower() == "https" and scheme == "http":
        problem = "it downgrades https to plain http"
    elif scheme == "http" and not (policy.allow_http or policy.mirror):
        problem = "plain http is not allowed for this source"
    else:
        own = urllib.parse.urlsplit(origin).hostname or ""
        host = new.hostname or ""
        if not (host_allowed(host, (own,)) or host_allowed(host, policy.redirect_hosts)):
            allowed = ", ".join((own, *policy.redirect_hosts))
            problem = f"host {host!r} is not among the hosts allowed for this download ({allowed})"
    if problem:
        raise DataError(f"refusing the redirect from {current} to {target}: {problem}. If you trust the "
                        f"target, name it as a mirror in the config ({policy.config_key}: {target}); "
                        f"otherwise the source has moved or is compromised.")


class _PolicyRedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handler, asked :func:`check_redirect` before every hop."""

    def __init__(self, policy: UrlPolicy, origin: str):
        super().__init__()
        self.policy, self.origin = policy, origin

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_redirect(self.policy, self.origin, req.full_url, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# ----------------------------------------------------------------------------- HTTP
def _manual_hint(url: str, dest: Path, expected: Expected, policy: UrlPolicy | None = None) -> str:
    lock = read_lock(expected.lock_file) if expected.lock_file else {}
    mirror = f" (or name a mirror in {policy.config_key})" if policy is not None else ""
    return (f"Download {url} on a machine with internet access and place it at {dest} "
            f"(expected {expected.describe(lock)}){mirror}, then re-run; an existing verified file is never "
            f"downloaded again.")


class DownloadTooLarge(DataError):
    """The source sent (or announced) more bytes than the archive's size limit: not retried."""


class DeadlineExceeded(TimeoutError):
    """An attempt passed its deadline (retried: the next attempt resumes the partial file)."""


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Deadline:
    """The deadline of one attempt: :meth:`passed` is checked between reads, and a watchdog timer shuts
    down every connection the attempt opened (through :meth:`connection_class`) when it expires, so a
    read blocked on a server that trickles bytes or headers returns at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            for s in self._socks:
                s.close()
            self._socks.clear()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.end

    def watch(self, sock: socket.socket) -> None:
        # a duplicate of the descriptor: shutting it down ends the connection even once TLS has taken over
        # the original socket object
        dup = sock.dup()
        with self._lock:
            self._socks.append(dup)
            if self.expired:
                _shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shutdown(s)

    def connection_class(self, base: type) -> type:
        """``base`` (http.client.HTTP(S)Connection) whose sockets this deadline watches."""
        clock = self

        class Watched(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                create = self._create_connection

                def create_and_watch(*a, **kw):
                    sock = create(*a, **kw)
                    clock.watch(sock)
                    return sock

                self._create_connection = create_and_watch

        return Watched


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, clock: _Deadline):
        super().__init__()
        self.clock = clock

    def http_open(self, req):
        return self.do_open(self.clock.connection_class(http.client.HTTPConnection), req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, clock: _Deadline):
        super().__init__()
        self.clock = clock

    def https_open(self, req):
        return self.do_open(self.clock.connection_class(http.client.HTTPSConnection), req, context=self._context)


def default_deadline(max_bytes: int | None) -> float:
    """Seconds for one attempt: the size limit at :data:`DEADLINE_MIN_RATE`, at least :data:`DEADLINE_FLOOR_S`
    (:data:`DEADLINE_DEFAULT_S` without a size limit)."""
    if not max_bytes:
        return DEADLINE_DEFAULT_S
    return max(DEADLINE_FLOOR_S, max_bytes / DEADLINE_MIN_RATE)


def _too_large(url: str, key: str, what: str, max_bytes: int, size_note: str) -> DownloadTooLarge:
    return DownloadTooLarge(
        f"stopped the download of '{key or url}' from {url}: {what}, more than its limit of {max_bytes:,} bytes"
        + (f" ({size_note})" if size_note else "") + ". The source serves another file than the one expected "
        f"(a mirror serving a different file, or a changed or compromised source); the partial download was "
        f"deleted. If you trust this larger file (e.g. a mirror's own repack), pin its checksum in "
        f"downloads.checksums.{key or '<key>'} and raise the limit with downloads.max_bytes.{key or '<key>'}.")


def _fetch_once(url: str, part: Path, timeout: float, policy: UrlPolicy | None = None, *,
                max_bytes: int | None = None, deadline: float | None = None, size_note: str = "") -> None:
    """One HTTP attempt: resume ``part`` with a Range request if it has bytes, else start from zero.
    Redirects are checked against ``policy`` (:func:`check_redirect`). Stops with
    :class:`DownloadTooLarge` once ``part`` would pass ``max_bytes`` (or the server announces more), and
    with :class:`DeadlineExceeded` once the attempt has run ``deadline`` seconds."""
    policy = policy or UrlPolicy()
    deadline = deadline if deadline is not None else default_deadline(max_bytes)
    have = part.stat().st_size if part.exists() else 0
    if max_bytes is not None and have > max_bytes:
        log.warning("%s holds %d bytes, more than the limit of %d: discarded, downloading from zero",
                    part, have, max_bytes)
        part.unlink()
        have = 0
    start = have
    headers = {"User-Agent": "lffood-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    got = have

    def late(exc: BaseException | None = None) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the attempt passed its deadline of {deadline:g} s with {got:,} bytes of {url} received "
            f"({got - start:,} in this attempt): the source is too slow or stalls. downloads.deadline_s sets "
            f"this deadline (default: the size limit at {DEADLINE_MIN_RATE // 1000} kB/s, at least "
            f"{DEADLINE_FLOOR_S:g} s); every retry resumes the partial file"
            + (f" (interrupted: {exc})" if exc else ""))

    with _Deadline(deadline) as clock:
        opener = urllib.request.build_opener(_PolicyRedirectHandler(policy, url), _DeadlineHTTPHandler(clock),
                                             _DeadlineHTTPSHandler(clock))
        try:
            resp = opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # the .part already holds every byte
                log.info("%s: server says the partial file is complete (416)", part)
                return
            raise
        except (OSError, http.client.HTTPException) as exc:
            if clock.passed():
                raise late(exc) from exc
            raise
        with resp:
            status = getattr(resp, "status", 200)
            if resp.geturl() != url:
                log.info("%s redirected to %s", url, resp.geturl())
            if have and status == 206:
                mode = "ab"
                log.info("resuming %s at byte %d", url, have)
            else:
                if have:
                    log.info("server ignored the Range request (HTTP %s): restarting %s from zero", status, url)
                mode, have, start, got = "wb", 0, 0, 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None and length.isdigit() else None
            if max_bytes is not None and total is not None and total > max_bytes:
                raise _too_large(url, policy.key, f"the server announces {total:,} bytes", max_bytes, size_note)
            read = getattr(resp, "read1", resp.read)  # read1: one system call, so the deadline is checked often
            next_report = time.monotonic() + 10
            with open(part, mode) as fh:
                while True:
                    if clock.passed():
                        raise late()
                    try:
                        block = read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        if clock.passed():
                            raise late(exc) from exc
                        raise
                    if not block:
                        break
                    if max_bytes is not None and got + len(block) > max_bytes:
                        raise _too_large(url, policy.key, f"{got + len(block):,} bytes received", max_bytes,
                                         size_note)
                    fh.write(block)
                    got += len(block)
                    if time.monotonic() > next_report:
                        log.info("%s: %.1f MB%s", part.name, got / 1e6, f" of {total / 1e6:.1f} MB" if total else "")
                        next_report = time.monotonic() + 10
            if (total is None or got < total) and clock.expired:  # the watchdog ended the connection
                raise late()
            if total is not None and got < total:
                raise http.client.IncompleteRead(b"", total - got)


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, TimeoutError)


def download(url: str, dest: str | os.PathLike, expected: Expected | None = None, *, timeout: float = 60,
             retries: int = 3, backoff: float = 2.0, policy: UrlPolicy | None = None,
             max_bytes: int | None = None, deadline: float | None = None, size_note: str = "") -> Path:
    """Make ``dest`` a verified copy of ``url``; no network access when it already is one.

    ``policy`` says which schemes and redirects are allowed (default: https only, no redirect off the
    URL's host); a URL it refuses, or plain http / file:// for a file whose checksum is not pinned
    (:func:`check_pinned`), is refused before anything else, even when ``dest`` exists, so a wrong
    ``downloads.urls`` entry is reported on every run, not only on the first. ``timeout`` bounds each
    socket operation, ``deadline`` (seconds, default :func:`default_deadline`) each attempt as a whole;
    ``max_bytes`` is the most the file may have (``size_note`` says where that limit comes from)."""
    dest = Path(dest)
    expected = expected or Expected()
    policy = policy or UrlPolicy()
    check_pinned(url, check_url(url, policy), expected, policy)
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
            _fetch_once(url, part, timeout, policy, max_bytes=max_bytes, deadline=deadline, size_note=size_note)
        except DownloadTooLarge as exc:  # another file: neither keep nor resume it
            part.unlink(missing_ok=True)
            raise DataError(f"{exc} " + _manual_hint(url, dest, expected, policy)) from None
        except DataError as exc:  # a refused redirect: retrying will not help
            raise DataError(f"{exc} " + _manual_hint(url, dest, expected, policy)) from None
        except urllib.error.HTTPError as exc:
            last_error = exc
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break  # not found, forbidden...: retrying will not help
        except _NETWORK_ERRORS as exc:
            last_error = exc
        else:
            try:
                what = verify(part, expected, url=url, final=dest)
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
                                + _manual_hint(url, dest, expected, policy)) from None
            os.replace(part, dest)
            log.info("downloaded %s (%d bytes), %s", dest, dest.stat().st_size, what)
            return dest
        if attempt <= retries:
            wait = backoff * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retrying in %.0f s", url, last_error, wait)
            time.sleep(wait)
    kept = (f" The partial file {part} ({part.stat().st_size} bytes) is kept and resumed by the next run."
            if part.exists() and part.stat().st_size else "")
    raise DataError(f"could not download {url}: {last_error}.{kept} " + _manual_hint(url, dest, expected, policy))


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


def prefer_https(url: str, a: sources.Archive) -> str:
    """``url`` with http upgraded to https unless the registry marks the archive's host ``http_only``
    (torchvision still names SVHN's host with http://, which serves https too)."""
    if url.lower().startswith("http://") and not a.http_only:
        return "https://" + url[len("http://"):]
    return url


def spec(key: str) -> Spec:
    """URL, file name and md5 used at run time: torchvision's for the torchvision-backed archives
    (URL moved to https, :func:`prefer_https`), the registry's for the others."""
    a = sources.archive(key)
    if a.torchvision:
        s = torchvision_spec(key)
        if s.filename != a.filename:
            raise DataError(f"torchvision.datasets.{a.torchvision} now names its file {s.filename!r}, but "
                            f"lffood.data.sources registers {a.filename!r} for '{key}'. Update the registry.")
        return Spec(prefer_https(s.url, a), s.filename, s.md5)
    return Spec(a.url, a.filename, a.md5)


def expected_for(key: str, downloads: Mapping) -> Expected:
    """The checksum the archive ``key`` must match: the one pinned in ``downloads.checksums.<key>``
    when set, else the published md5, else the lock file's entry (trust on first use)."""
    pinned = (downloads.get("checksums") or {}).get(key)
    if pinned:
        algo, digest = pinned.split(":", 1)
        return Expected(md5=digest if algo == "md5" else None, sha256=digest if algo == "sha256" else None,
                        lock_key=key)
    s = spec(key)
    return Expected(md5=s.md5, lock_file=None if s.md5 else downloads["lock_file"], lock_key=key)


def size_limit(downloads: Mapping, key: str, expected: Expected | None = None) -> tuple[int, str]:
    """``(bytes, where the limit comes from)``: the most the archive ``key`` may have.

    ``downloads.max_bytes.<key>`` when set (a mirror serving a larger file); else the size recorded in
    the lock file when the archive is verified against it (the exact size of the first download);
    else the registry's ``size`` plus :data:`sources.SIZE_MARGIN`. A checksum pinned in
    ``downloads.checksums`` does not change the limit: a smaller file (a rehearsal's tiny archive) is
    below it anyway, and a larger one needs ``downloads.max_bytes.<key>``."""
    override = (downloads.get("max_bytes") or {}).get(key)
    if override:
        return int(override), f"downloads.max_bytes.{key}"
    if expected is not None and expected.lock_file and not (expected.md5 or expected.sha256):
        entry = read_lock(expected.lock_file).get(expected.lock_key or key)
        if entry and entry.get("size"):
            return int(entry["size"]), f"the size recorded in {expected.lock_file} on its first download"
    a = sources.archive(key)
    what = "expected size" if a.size_exact else "upper bound of its size (the exact size is not published)"
    return (int(a.size * (1 + sources.SIZE_MARGIN)),
            f"the registry's {what} {a.size:,} bytes + {sources.SIZE_MARGIN:.0%}, lffood.data.sources")


def deadline_for(downloads: Mapping, max_bytes: int | None) -> float:
    """Seconds one attempt may take: ``downloads.deadline_s``, else :func:`default_deadline`."""
    d = downloads.get("deadline_s")
    return float(d) if d else default_deadline(max_bytes)


def url_for(cfg: Mapping, key: str) -> str:
    """``downloads.urls.<key>`` when set, else the registry's (torchvision's) URL."""
    return sources.mirror_url(cfg, key) or spec(key).url


def fetch_archive(cfg: Mapping, key: str, receipt: str | os.PathLike | None = None) -> Path:
    """Download (or verify an existing copy of) the archive ``key`` as the validated config says;
    optionally write a JSON receipt (what was verified) to ``receipt``."""
    dl = cfg["downloads"]
    url = url_for(cfg, key)
    dest = Path(sources.archive_path(cfg, key))
    expected = expected_for(key, dl)
    max_bytes, note = size_limit(dl, key, expected)
    download(url, dest, expected, timeout=dl.get("timeout_s", 60), retries=dl.get("retries", 3),
             policy=policy_for(cfg, key), max_bytes=max_bytes, deadline=deadline_for(dl, max_bytes), size_note=note)
    prefix = sources.archive(key).sha256_prefix
    if prefix and not expected.sha256:  # a published digest prefix, and no checksum of the user's own
        digest = file_digest(dest, "sha256")
        if not digest.startswith(prefix):
            raise DataError(f"{dest}: sha256 {digest} does not start with {prefix}, the digest prefix published "
                            f"for {key} ({url}). Delete the file and the entry '{key}' of "
                            f"{dl['lock_file']} and download again, or pin your own file's checksum: "
                            f"{pin_line(key, 'sha256:' + digest)}.")
    if receipt is not None:
        entry = read_lock(dl["lock_file"]).get(key, {}) if expected.lock_file else {}
        info = {"archive": key, "path": str(dest), "url": url, "size": dest.stat().st_size, "max_bytes": max_bytes,
                "md5": expected.md5, "sha256_pinned": expected.sha256, "sha256_lock": entry.get("sha256")}
        with atomic_path(receipt) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
    return dest


def describe_sources(cfg: Mapping) -> str:
    """A table of every archive: key, URL, checksum, where to place it by hand (``lffood download --list``)."""
    lock = read_lock(cfg["downloads"]["lock_file"])
    lines = []
    for key, a in sources.ARCHIVES.items():
        pinned = (cfg["downloads"].get("checksums") or {}).get(key)
        if pinned:
            ck = f"{pinned.replace(':', ' ', 1)} (pinned in downloads.checksums.{key})"
        elif a.md5:
            ck = f"md5 {a.md5} ({a.checksum_source})"
        elif key in lock:
            ck = (f"sha256 {lock[key]['sha256']} (lock file; to pin it in a config: "
                  f"{pin_line(key, 'sha256:' + lock[key]['sha256'])})")
        else:
            ck = "no published checksum: trusted on first use, sha256 recorded in the lock file on first download"
        pol = policy_for(cfg, key)
        via = (f"its own host only (your mirror, {pol.config_key})" if pol.mirror
               else ", ".join(("its own host", *pol.redirect_hosts)))
        tofu = not pinned and not a.md5  # verified against the lock file, whose size is then the limit
        limit, note = size_limit(cfg["downloads"], key,
                                 Expected(lock_file=cfg["downloads"]["lock_file"] if tofu else None, lock_key=key))
        size = f"{a.size:,} bytes" if a.size_exact else f"at most {a.size:,} bytes (upper bound)"
        lines.append(f"{key}\n  {a.description}\n  url:   {sources.archive_url(cfg, key)}\n  redirects: {via}\n"
                     f"  check: {ck}\n  size:  {size}; a download stops past {limit:,} bytes ({note})\n"
                     f"  place: {sources.archive_path(cfg, key)}")
    return "\n".join(lines)
