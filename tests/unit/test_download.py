"""Downloads: atomic, resumable, verified (md5 or lock file), no second download, clear offline errors;
size limits, a deadline per attempt, and trust on first use only over https."""

import hashlib
import http.server
import json
import socket
import threading
import time

import pytest

from data.fixtures import FixtureServer, md5
from lffood.config import validate_config
from lffood.data import download as dl
from lffood.data import sources
from lffood.data.download import Expected, UrlPolicy, download
from lffood.errors import ConfigError, DataError

from conftest import SCHEMA

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB: more than one read chunk
#: the loopback server speaks plain http: these tests download as from a mirror the user named
LOCAL = UrlPolicy(key="test", mirror=True)


def _leftovers(d):
    return sorted(p.name for p in d.iterdir())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def https(monkeypatch):
    """Lets ``https://127.0.0.1:<port>/...`` reach the loopback server, which speaks plain http: every
    check (scheme, pinning, trust on first use, what the lock records) sees the https URL, and only the
    transport of :func:`dl._fetch_once` is the loopback's http. Returns the http -> https URL mapping."""
    fetch = dl._fetch_once

    def fetch_over_loopback(url, *args, **kwargs):
        return fetch(url.replace("https://127.0.0.1:", "http://127.0.0.1:", 1), *args, **kwargs)

    monkeypatch.setattr(dl, "_fetch_once", fetch_over_loopback)
    return lambda url: url.replace("http://", "https://", 1)


class MisbehavingServer:
    """A loopback server that answers every GET in one bad way: ``body`` trickles the body one byte per
    ``interval`` (with a Content-Length), ``headers`` trickles the header lines the same way, and
    ``unbounded`` streams zeros with no Content-Length until the client hangs up."""

    def __init__(self, mode: str, interval: float = 0.1, length: int = 1000):
        stop = self.stop = threading.Event()
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                try:
                    if mode == "headers":
                        self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                        while not stop.is_set():
                            self.wfile.write(b"X")
                            self.wfile.flush()
                            time.sleep(interval)
                    elif mode == "body":
                        self.send_response(200)
                        self.send_header("Content-Length", str(length))
                        self.end_headers()
                        for _ in range(length):
                            if stop.is_set():
                                break
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(interval)
                    else:
                        self.send_response(200)
                        self.end_headers()  # HTTP/1.0, no length: the body ends when the connection closes
                        while not stop.is_set():
                            self.wfile.write(b"\0" * 65536)
                except OSError:  # the client hung up
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_verifies_md5_and_rerun_does_not_download(tmp_path):
    with FixtureServer() as srv:
        url = srv.add("a.bin", PAYLOAD)
        dest = tmp_path / "dl" / "a.bin"
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)
        assert dest.read_bytes() == PAYLOAD
        assert _leftovers(dest.parent) == ["a.bin"]
        assert srv.count("a.bin") == 1
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)  # re-run
        assert srv.count("a.bin") == 1


def test_corrupted_download_is_a_checksum_error_and_leaves_nothing(tmp_path):
    with FixtureServer() as srv:
        url = srv.add("a.tar.gz", PAYLOAD[:-1] + b"X")
        dest = tmp_path / "a.tar.gz"
        with pytest.raises(DataError) as exc:
            download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and md5(PAYLOAD) in msg and url in msg and str(dest) in msg
    assert _leftovers(tmp_path) == []  # neither the final file nor a .part


def test_existing_corrupt_file_is_reported_not_downloaded(tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"placed by hand, wrong")
    with FixtureServer() as srv:
        url = srv.add("a.bin", PAYLOAD)
        with pytest.raises(DataError, match="Delete .*a.bin"):
            download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)
        assert srv.count() == 0


def test_interrupted_download_resumes_with_range(tmp_path):
    with FixtureServer() as srv:
        url = srv.add("big.bin", PAYLOAD)
        srv.cut_after["/big.bin"] = [300_000]
        dest = tmp_path / "big.bin"
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=2, backoff=0, policy=LOCAL)
        assert dest.read_bytes() == PAYLOAD
        assert [r for _, r in srv.requests] == [None, "bytes=300000-"]


def test_server_without_range_support_restarts(tmp_path):
    with FixtureServer(range_support=False) as srv:
        url = srv.add("big.bin", PAYLOAD)
        srv.cut_after["/big.bin"] = [300_000]
        dest = tmp_path / "big.bin"
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=2, backoff=0, policy=LOCAL)
        assert dest.read_bytes() == PAYLOAD
        assert srv.count("big.bin") == 2


def test_failed_download_keeps_only_the_part_file_and_resumes_next_run(tmp_path):
    dest = tmp_path / "big.bin"
    with FixtureServer() as srv:
        url = srv.add("big.bin", PAYLOAD)
        srv.cut_after["/big.bin"] = [100_000, 100_000]
        with pytest.raises(DataError) as exc:
            download(url, dest, Expected(md5=md5(PAYLOAD)), retries=1, backoff=0, policy=LOCAL)
        assert not dest.exists()
        part = tmp_path / "big.bin.part"
        assert part.stat().st_size == 200_000 and "resumed by the next run" in str(exc.value)
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)  # next run
        assert dest.read_bytes() == PAYLOAD and not part.exists()
        assert srv.requests[-1][1] == "bytes=200000-"


def test_stale_part_file_is_discarded_when_checksum_fails(tmp_path):
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(b"garbage from another file")
    with FixtureServer() as srv:
        url = srv.add("big.bin", PAYLOAD)
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)
        assert dest.read_bytes() == PAYLOAD
        assert [r for _, r in srv.requests] == ["bytes=25-", None]


def test_lock_file_records_then_verifies(tmp_path, https):
    lock = tmp_path / "resources" / "checksums.lock"
    dest = tmp_path / "dl" / "iSUN.tar.gz"
    exp = Expected(lock_file=str(lock), lock_key="isun")
    with FixtureServer() as srv:
        url = https(srv.add("iSUN.tar.gz", PAYLOAD))
        download(url, dest, exp, retries=0, policy=LOCAL)
        entry = dl.read_lock(lock)["isun"]
        assert entry["sha256"] == dl.file_digest(dest, "sha256") and entry["size"] == len(PAYLOAD)
        assert entry["url"] == url
        download(url, dest, exp, retries=0, policy=LOCAL)  # re-run: verified against the lock, not downloaded
        assert srv.count() == 1
        # tampered file
        dest.write_bytes(PAYLOAD[:-1] + b"Z")
        with pytest.raises(DataError, match="checksum mismatch.*recorded"):
            download(url, dest, exp, retries=0, policy=LOCAL)
        # the upstream file changed: a fresh download no longer matches the lock either
        dest.unlink()
        srv.add("iSUN.tar.gz", PAYLOAD + b"more")
        with pytest.raises(DataError, match="remove the 'isun' entry"):
            download(url, dest, exp, retries=0, policy=LOCAL)
        assert not dest.exists()


def test_first_download_without_checksum_is_announced_and_locked_under_its_final_name(tmp_path, caplog, https):
    lock = tmp_path / "checksums.lock"
    dest = tmp_path / "dl" / "isun" / "iSUN.tar.gz"
    exp = Expected(lock_file=str(lock), lock_key="isun")
    with FixtureServer() as srv:
        url = https(srv.add("iSUN.tar.gz", PAYLOAD))
        with caplog.at_level("INFO", logger="lffood.download"):
            download(url, dest, exp, retries=0, policy=LOCAL)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        sha = dl.file_digest(dest, "sha256")
        assert len(warnings) == 1
        assert "trusted" in warnings[0] and "first use" in warnings[0] and sha in warnings[0]
        assert f"Commit {lock}" in warnings[0] and "'isun'" in warnings[0]
        # the recorded checksum comes with the ways to pin it: the lock file in git, or a config line
        assert f"git add {lock} && git commit" in warnings[0]
        assert f'downloads: {{checksums: {{isun: "sha256:{sha}"}}}}' in warnings[0]
        entry = dl.read_lock(lock)["isun"]
        assert entry["filename"] == "iSUN.tar.gz" and entry["path"] == str(dest)  # not the .part
        assert entry["sha256"] == sha and entry["size"] == len(PAYLOAD) and entry["url"] == url
        caplog.clear()
        with caplog.at_level("INFO", logger="lffood.download"):
            download(url, dest, exp, retries=0, policy=LOCAL)  # re-run: checked, nothing trusted anew
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # a file placed by hand with no lock entry is announced the same way
    caplog.clear()
    lock.unlink()
    with caplog.at_level("WARNING", logger="lffood.download"):
        download("https://example.invalid/iSUN.tar.gz", dest, exp)
    assert any("first use" in r.getMessage() for r in caplog.records)
    assert dl.read_lock(lock)["isun"]["path"] == str(dest)


# ----------------------------------------------------------------------------- schemes and redirects
def test_host_allowed_patterns():
    pats = ("www.dropbox.com", "*.dropboxusercontent.com")
    assert dl.host_allowed("www.dropbox.com", pats) and dl.host_allowed("WWW.Dropbox.com", pats)
    assert dl.host_allowed("uc1a2b.dl.dropboxusercontent.com", pats)
    assert not dl.host_allowed("dropboxusercontent.com", pats)        # the wildcard is for subdomains
    assert not dl.host_allowed("evil-dropboxusercontent.com", pats)
    assert not dl.host_allowed("dropbox.com.evil.org", pats)
    assert not dl.host_allowed("dropbox.com", pats)


def test_check_redirect_rules():
    reg = UrlPolicy(key="lsun_crop", redirect_hosts=("*.dropboxusercontent.com",))
    src = "https://www.dropbox.com/s/raw/x/LSUN.tar.gz"
    dl.check_redirect(reg, src, src, "https://uc9.dl.dropboxusercontent.com/cd/0/x")  # allow-listed
    dl.check_redirect(reg, src, src, "https://www.dropbox.com/scl/fi/x?raw=1")  # own host
    for target, why in [("https://evil.example.org/LSUN.tar.gz", "not among the hosts"),
                        ("http://uc9.dl.dropboxusercontent.com/x", "downgrades https"),
                        ("ftp://www.dropbox.com/LSUN.tar.gz", "not http"),
                        ("file:///etc/passwd", "not http")]:
        with pytest.raises(DataError, match=why) as exc:
            dl.check_redirect(reg, src, src, target)
        assert src in str(exc.value) and target in str(exc.value) and "downloads.urls.lsun_crop" in str(exc.value)
    # a host's own upgrade from http to https is followed, even where http is allowed
    http_src = "http://pages.example.edu/a.tar.gz"
    dl.check_redirect(UrlPolicy(key="k", allow_http=True), http_src, http_src, "https://pages.example.edu/a.tar.gz")
    with pytest.raises(DataError, match="plain http is not allowed"):  # http -> http where https is required
        dl.check_redirect(UrlPolicy(key="k"), "http://a.org/x", "http://a.org/x", "http://a.org/y")


def test_redirect_to_a_foreign_host_is_refused(tmp_path):
    dest = tmp_path / "iSUN.tar.gz"
    with FixtureServer() as srv:
        srv.add("elsewhere/iSUN.tar.gz", PAYLOAD)
        target = srv.url("elsewhere/iSUN.tar.gz", host="localhost")  # same server, another host name
        url = srv.redirect("iSUN.tar.gz", target)
        with pytest.raises(DataError) as exc:
            download(url, dest, Expected(md5=md5(PAYLOAD)), retries=3, backoff=0,
                     policy=UrlPolicy(key="isun", allow_http=True))
        assert srv.count("elsewhere/iSUN.tar.gz") == 0 and srv.count("iSUN.tar.gz") == 1  # not followed, not retried
    msg = str(exc.value)
    assert url in msg and target in msg and "'localhost'" in msg and "downloads.urls.isun" in msg
    assert f"place it at {dest}" in msg
    assert _leftovers(tmp_path) == []


def test_redirect_within_the_allow_list_is_followed(tmp_path):
    dest = tmp_path / "iSUN.tar.gz"
    with FixtureServer() as srv:
        srv.add("elsewhere/iSUN.tar.gz", PAYLOAD)
        url = srv.redirect("iSUN.tar.gz", srv.url("elsewhere/iSUN.tar.gz", host="localhost"))
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0,
                 policy=UrlPolicy(key="isun", allow_http=True, redirect_hosts=("localhost",)))
        assert dest.read_bytes() == PAYLOAD
        assert [p for p, _ in srv.requests] == ["/iSUN.tar.gz", "/elsewhere/iSUN.tar.gz"]
        # a redirect within the URL's own host needs no allow-list
        url2 = srv.redirect("b.bin", srv.url("elsewhere/iSUN.tar.gz"))
        download(url2, tmp_path / "b.bin", Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL)
        assert (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_mirror_redirects_stay_on_the_mirror_host(tmp_path):
    with FixtureServer() as srv:
        srv.add("elsewhere/iSUN.tar.gz", PAYLOAD)
        url = srv.redirect("iSUN.tar.gz", srv.url("elsewhere/iSUN.tar.gz", host="localhost"))
        cfg = _cfg(tmp_path, urls={"isun": url}, checksums={"isun": f"sha256:{_sha(PAYLOAD)}"})
        with pytest.raises(DataError, match="'localhost' is not among the hosts.*downloads.urls.isun"):
            dl.fetch_archive(cfg, "isun")
        assert srv.count("iSUN.tar.gz") == 1 and srv.count("elsewhere/iSUN.tar.gz") == 0


@pytest.mark.parametrize("url", ["ftp://ftp.example.org/iSUN.tar.gz", "data:,hello", "gopher://x/1"])
def test_other_schemes_are_refused_even_as_mirror(tmp_path, url):
    for policy in (UrlPolicy(key="isun"), LOCAL):
        with pytest.raises(DataError, match="only https, http and") as exc:
            download(url, tmp_path / "iSUN.tar.gz", retries=0, policy=policy)
        assert url in str(exc.value)
    with pytest.raises(DataError, match="downloads.urls.isun"):
        dl.fetch_archive(_cfg(tmp_path, urls={"isun": url}), "isun")
    assert _leftovers(tmp_path) == []


def test_file_url_only_as_a_named_mirror_with_a_pinned_checksum(tmp_path):
    local = tmp_path / "mirror" / "iSUN.tar.gz"
    local.parent.mkdir()
    local.write_bytes(PAYLOAD)
    uri = local.as_uri()
    with pytest.raises(DataError, match="file:// is only accepted .* downloads.urls.isun"):
        download(uri, tmp_path / "a" / "iSUN.tar.gz", policy=UrlPolicy(key="isun"))
    assert not (tmp_path / "a").exists()
    # named as a mirror, but iSUN has no published checksum: trust on first use is for https only
    cfg = _cfg(tmp_path, urls={"isun": uri})
    with pytest.raises(DataError) as exc:
        dl.fetch_archive(cfg, "isun")
    msg = str(exc.value)
    assert "refusing to download 'isun'" in msg and uri in msg and "file:// source" in msg
    assert "downloads.checksums.isun" in msg and str(tmp_path / "checksums.lock") in msg and "over https" in msg
    assert not (tmp_path / "data").exists() and not (tmp_path / "checksums.lock").exists()
    # pinned in the config: accepted, verified against the pin, nothing recorded
    pinned = _cfg(tmp_path, urls={"isun": uri}, checksums={"isun": f"sha256:{_sha(PAYLOAD)}"})
    path = dl.fetch_archive(pinned, "isun")
    assert path.read_bytes() == PAYLOAD and not path.with_name("iSUN.tar.gz.part").exists()
    assert not (tmp_path / "checksums.lock").exists()
    # pinned in the lock file (e.g. a first download over https): accepted and checked against it
    path.unlink()
    dl.record_lock(tmp_path / "checksums.lock", "isun", {"sha256": _sha(PAYLOAD), "size": len(PAYLOAD)})
    assert dl.fetch_archive(cfg, "isun").read_bytes() == PAYLOAD
    path.unlink()
    local.write_bytes(PAYLOAD + b"!")  # the local copy changed: the lock entry catches it (size limit first)
    with pytest.raises(DataError, match="size recorded in"):
        dl.fetch_archive(cfg, "isun")


def test_plain_http_is_refused_where_the_source_offers_https(tmp_path):
    url = "http://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    with pytest.raises(DataError, match="plain http is refused.*https://www.cs.toronto.edu/") as exc:
        download(url, tmp_path / "c.tar.gz", policy=UrlPolicy(key="cifar10"))
    assert "downloads.urls.cifar10" in str(exc.value)
    download_http = UrlPolicy(key="x", allow_http=True)  # a registry entry marked http_only
    assert dl.check_url(url, download_http) == "http"


def test_registry_urls_are_https_and_policies_follow_the_config(tmp_path):
    for key, a in sources.ARCHIVES.items():
        assert a.url.startswith("https://") or a.http_only, key
        assert dl.spec(key).url.startswith("https://") or a.http_only, key
    cfg = _cfg(tmp_path, urls={"sun": "file:///srv/mirror/SUN.tar.gz"})
    assert dl.policy_for(cfg, "sun") == UrlPolicy(key="sun", allow_http=True, mirror=True)
    p = dl.policy_for(cfg, "lsun_crop")
    assert not p.mirror and not p.allow_http and "*.dropboxusercontent.com" in p.redirect_hosts
    assert dl.host_allowed("thor.robots.ox.ac.uk", dl.policy_for(cfg, "dtd").redirect_hosts)


def test_lock_file_keeps_other_entries(tmp_path):
    lock = tmp_path / "checksums.lock"
    dl.record_lock(lock, "a", {"sha256": "1"})
    dl.record_lock(lock, "b", {"sha256": "2"})
    data = json.loads(lock.read_text())
    assert data["version"] == 1 and set(data["files"]) == {"a", "b"}


def test_offline_error_names_url_and_manual_path(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/LSUN.tar.gz"
    dest = tmp_path / "downloads" / "lsun_crop" / "LSUN.tar.gz"
    with pytest.raises(DataError) as exc:
        download(url, dest, Expected(md5="0" * 32), retries=1, backoff=0, timeout=5, policy=LOCAL)
    msg = str(exc.value)
    assert url in msg and f"place it at {dest}" in msg and "md5 " + "0" * 32 in msg
    assert not dest.exists()


def test_http_404_is_not_retried(tmp_path):
    with FixtureServer() as srv:
        with pytest.raises(DataError, match="404"):
            download(srv.url("missing.tar"), tmp_path / "m.tar", Expected(md5="0" * 32), retries=3, backoff=0,
                     policy=LOCAL)
        assert srv.count() == 1


def _cfg(tmp_path, **downloads):
    return validate_config({"data_dir": str(tmp_path / "data"),
                            "downloads": {"lock_file": str(tmp_path / "checksums.lock"), **downloads},
                            "run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded",
                                                                           "ood_sets": ["far"]}}}}, SCHEMA)


def test_fetch_archive_uses_url_override_and_writes_receipt(tmp_path):
    with FixtureServer() as srv:
        url = srv.add("iSUN.tar.gz", PAYLOAD)
        cfg = _cfg(tmp_path, urls={"isun": url})
        # an http mirror of an archive with no published checksum: accepted once the lock file pins it
        dl.record_lock(tmp_path / "checksums.lock", "isun", {"sha256": _sha(PAYLOAD), "size": len(PAYLOAD)})
        receipt = tmp_path / "receipt.json"
        path = dl.fetch_archive(cfg, "isun", receipt=receipt)
        assert path == tmp_path / "data" / "downloads" / "isun" / "iSUN.tar.gz"
        info = json.loads(receipt.read_text())
        assert info["url"] == url and info["sha256_lock"] == dl.file_digest(path, "sha256")
        assert info["max_bytes"] == len(PAYLOAD)  # the lock file's exact size is the limit
        listing = dl.describe_sources(cfg)
        assert "isun" in listing and f"stops past {len(PAYLOAD):,} bytes (the size recorded in" in listing
        assert f'downloads: {{checksums: {{isun: "sha256:{_sha(PAYLOAD)}"}}}}' in listing
        assert "size:  170,498,071 bytes; a download stops past 187,547,878 bytes" in listing  # cifar10


def test_registry_agrees_with_torchvision():
    import torchvision.datasets as tvd

    def no_scheme(url):
        return url.split("://", 1)[1]

    for key in ("cifar10", "cifar100", "svhn"):
        a, tv, run = sources.archive(key), dl.torchvision_spec(key), dl.spec(key)
        assert (a.filename, a.md5) == (tv.filename, tv.md5) == (run.filename, run.md5), key
        assert no_scheme(a.url) == no_scheme(tv.url), key  # torchvision may still say http://
        assert a.url == run.url and run.url.startswith("https://"), key  # what is fetched is https
    assert sources.archive("dtd").md5 == tvd.DTD._MD5 and sources.archive("dtd").url == tvd.DTD._URL
    assert sources.archive("places365").md5 == tvd.Places365._IMAGES_META[("test", True)][1]
    assert no_scheme(sources.archive("places365").url) == no_scheme(tvd.Places365._BASE_URL) + "test_256.tar"


def test_config_downloads_defaults_and_unknown_url_key(tmp_path):
    cfg = validate_config({"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded", "ood_sets": ["far"]}}}},
                          SCHEMA)
    assert cfg["downloads"] == {"dir": None, "lock_file": "resources/checksums.lock", "urls": {}, "checksums": {},
                                "max_bytes": {}, "timeout_s": 60, "deadline_s": None, "retries": 3}
    assert sources.downloads_dir(cfg) == "resources/data/downloads"
    with pytest.raises(ConfigError, match="downloads.urls"):
        _cfg(tmp_path, urls={"lsun": "http://x"})


@pytest.mark.parametrize("source,ood,ok", [
    ("cifar10", ["svhn", "lsun_crop", "lsun_resize", "isun", "textures", "places365"], True),
    ("cifar100", ["places"], False),             # the MOS set belongs to ImageNet
    ("imagenet100", ["inaturalist", "sun", "places", "textures"], True),
    ("imagenet100", ["svhn"], False),
    ("embedded", ["svhn"], False),
])
def test_ood_set_names_are_checked_per_source(source, ood, ok):
    cfg = {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": source, "ood_sets": ood}}}}
    if ok:
        validate_config(cfg, SCHEMA)
    else:
        with pytest.raises(ConfigError, match="benchmarks.b.dataset.ood_sets"):
            validate_config(cfg, SCHEMA)


def test_crop_larger_than_resize_is_rejected():
    cfg = {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "imagenet100", "ood_sets": ["sun"],
                                                          "ood_resize": 224, "ood_crop": 256}}}}
    with pytest.raises(ConfigError, match="ood_crop"):
        validate_config(cfg, SCHEMA)


def test_cli_download_list_and_fetch(tmp_path, capsys):
    from lffood.cli import main

    with FixtureServer() as srv:
        url = srv.add("SUN.tar.gz", PAYLOAD)
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"data_dir: {tmp_path}/data\ndownloads: {{lock_file: {tmp_path}/l.lock, urls: {{sun: '{url}'}}, "
                       f"checksums: {{sun: 'sha256:{_sha(PAYLOAD)}'}}}}\n"
                       "benchmarks: {b: {dataset: {source: embedded, ood_sets: [far]}}}\nrun: [b]\n")
        assert main(["download", "--list", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert f"place: {tmp_path}/data/downloads/places365/test_256.tar" in out and url in out
        assert "size:  at most 4,800,000,000 bytes (upper bound)" in out
        assert main(["download", "sun", "--config", str(cfg)]) == 0
        assert (tmp_path / "data/downloads/sun/SUN.tar.gz").read_bytes() == PAYLOAD
        assert main(["download", "nope", "--config", str(cfg)]) == 1


def test_checksum_pinned_in_config_replaces_the_published_one(tmp_path):
    """downloads.checksums.<key> (md5: or sha256:) is what the archive is verified against: a mirror's
    own bytes pass, anything else fails with the key named; nothing is recorded in the lock file."""
    import hashlib

    blob = b"not the real LSUN archive"
    sha = hashlib.sha256(blob).hexdigest()
    lock = tmp_path / "lock.json"
    with FixtureServer() as srv:
        url = srv.add("LSUN.tar.gz", blob)
        for pin in (f"sha256:{sha}", f"md5:{md5(blob)}"):
            cfg = {"data_dir": str(tmp_path / pin[:3]), "downloads": {
                "dir": None, "lock_file": str(lock), "urls": {"lsun_crop": url}, "checksums": {"lsun_crop": pin},
                "timeout_s": 5, "retries": 0}}
            path = dl.fetch_archive(cfg, "lsun_crop", receipt=tmp_path / f"{pin[:3]}.json")
            assert path.read_bytes() == blob
        assert not lock.exists()
        cfg["data_dir"] = str(tmp_path / "bad")
        cfg["downloads"]["checksums"] = {"lsun_crop": "sha256:" + "0" * 64}
        with pytest.raises(DataError, match="pinned in downloads.checksums.lsun_crop"):
            dl.fetch_archive(cfg, "lsun_crop")


# ----------------------------------------------------------------------------- limits
def test_announced_body_over_the_size_limit_is_refused_before_reading(tmp_path):
    dest = tmp_path / "LSUN.tar.gz"
    with FixtureServer() as srv:
        url = srv.add("LSUN.tar.gz", PAYLOAD)
        t0 = time.monotonic()
        with pytest.raises(DataError) as exc:
            download(url, dest, Expected(md5=md5(PAYLOAD)), retries=2, backoff=0, policy=LOCAL,
                     max_bytes=100_000, size_note="a note on the limit")
        assert time.monotonic() - t0 < 5 and srv.count() == 1  # not retried: another file stays another file
    msg = str(exc.value)
    assert "'test'" in msg and url in msg and f"announces {len(PAYLOAD):,} bytes" in msg and "100,000 bytes" in msg
    assert "a note on the limit" in msg and "downloads.max_bytes.test" in msg and "downloads.checksums.test" in msg
    assert f"place it at {dest}" in msg
    assert _leftovers(tmp_path) == []  # the partial file of another file is not kept for resuming


def test_body_without_length_stops_at_the_size_limit(tmp_path):
    dest = tmp_path / "big.bin"
    with MisbehavingServer("unbounded") as srv:
        t0 = time.monotonic()
        with pytest.raises(DataError) as exc:
            download(srv.url("big.bin"), dest, Expected(md5="0" * 32), retries=2, backoff=0, timeout=5,
                     policy=UrlPolicy(key="svhn", mirror=True), max_bytes=1_000_000)
        assert time.monotonic() - t0 < 5 and srv.requests == 1
    msg = str(exc.value)
    assert "stopped the download of 'svhn'" in msg and srv.url("big.bin") in msg and "bytes received" in msg
    assert "more than its limit of 1,000,000 bytes" in msg and "downloads.max_bytes.svhn" in msg
    assert _leftovers(tmp_path) == []


def test_stale_part_file_over_the_limit_is_discarded(tmp_path):
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"\0" * 2_000_000)
    with FixtureServer() as srv:
        url = srv.add("a.bin", PAYLOAD)
        download(url, dest, Expected(md5=md5(PAYLOAD)), retries=0, policy=LOCAL, max_bytes=len(PAYLOAD))
        assert dest.read_bytes() == PAYLOAD and srv.requests == [("/a.bin", None)]  # no Range: from zero


def test_registry_size_limits_a_mirror_and_max_bytes_overrides_it(tmp_path, monkeypatch):
    """The registry's size (+10%) limits every download, a mirror's with a pinned checksum included:
    smaller files (the rehearsal's tiny archives) pass, a larger one needs downloads.max_bytes.<key>."""
    import dataclasses

    monkeypatch.setitem(sources.ARCHIVES, "lsun_crop",
                        dataclasses.replace(sources.ARCHIVES["lsun_crop"], size=100_000, size_exact=True))
    assert dl.size_limit({}, "lsun_crop") == (110_000, "the registry's expected size 100,000 bytes + 10%, "
                                                        "lffood.data.sources")
    pin = {"lsun_crop": f"sha256:{_sha(PAYLOAD)}"}
    with FixtureServer() as srv:
        url = srv.add("LSUN.tar.gz", PAYLOAD)
        cfg = _cfg(tmp_path, urls={"lsun_crop": url}, checksums=pin)
        with pytest.raises(DataError) as exc:
            dl.fetch_archive(cfg, "lsun_crop")
        msg = str(exc.value)
        assert "'lsun_crop'" in msg and url in msg and f"{len(PAYLOAD):,} bytes" in msg and "110,000 bytes" in msg
        assert "expected size 100,000 bytes + 10%" in msg and "downloads.max_bytes.lsun_crop" in msg
        cfg = _cfg(tmp_path, urls={"lsun_crop": url}, checksums=pin, max_bytes={"lsun_crop": len(PAYLOAD)})
        assert dl.fetch_archive(cfg, "lsun_crop").read_bytes() == PAYLOAD
    with pytest.raises(ConfigError, match="max_bytes"):
        _cfg(tmp_path, max_bytes={"lsun_crop": 0})


def test_size_limit_and_deadline_defaults(tmp_path):
    lock = tmp_path / "l.lock"
    tofu = Expected(lock_file=str(lock), lock_key="sun")
    limit, note = dl.size_limit({}, "sun", tofu)
    assert limit == int(sources.archive("sun").size * 1.1) and "upper bound" in note
    dl.record_lock(lock, "sun", {"sha256": "0" * 64, "size": 1234})
    assert dl.size_limit({}, "sun", tofu) == (1234, f"the size recorded in {lock} on its first download")
    assert dl.size_limit({"max_bytes": {"sun": 99}}, "sun", tofu) == (99, "downloads.max_bytes.sun")
    # a pinned checksum keeps the registry's limit (not the lock's)
    assert dl.size_limit({}, "sun", Expected(sha256="1" * 64, lock_key="sun"))[0] == limit
    assert dl.deadline_for({}, 1000) == dl.DEADLINE_FLOOR_S
    assert dl.deadline_for({}, 5_280_000_000) == 5_280_000_000 / dl.DEADLINE_MIN_RATE
    assert dl.deadline_for({"deadline_s": 7}, 5_280_000_000) == 7
    assert dl.default_deadline(None) == dl.DEADLINE_DEFAULT_S


def test_registry_sizes():
    known = {"cifar10": 170_498_071, "cifar100": 169_001_437, "svhn": 64_275_384, "dtd": 625_239_812}
    for key, a in sources.ARCHIVES.items():
        assert a.size > 0, key
        assert a.size_exact == (key in known), key
        if key in known:
            assert a.size == known[key], key


def test_ood_set_registry_is_one_entry_per_set():
    """lffood.names.OOD_SETS: every set of a family once, downloaded sets naming a registered archive
    (read by an OOD reader), generated sets none; the per-source lists and lookups derive from it."""
    from lffood.names import OOD_SETS, OOD_SETS_BY_SOURCE, PREPROCESSING, SOURCES, ood_set

    for src in SOURCES:
        names = OOD_SETS_BY_SOURCE[src]
        assert names and len(set(names)) == len(names), src
        for n in names:
            s = ood_set(src, n)
            assert s.name == n and src in s.sources and s.preprocess in PREPROCESSING
            if s.preprocess == "generated":
                assert s.archive is None and s.sources == ("embedded",)
            else:
                assert sources.archive(s.archive).kind in ("svhn", "tar") and sources.ood_archive(src, n) == s.archive
    assert OOD_SETS_BY_SOURCE["cifar100"] == ("svhn", "lsun_crop", "lsun_resize", "isun", "textures", "places365")
    assert OOD_SETS_BY_SOURCE["imagenet100"] == ("inaturalist", "sun", "places", "textures")  # Table III's columns
    assert {s.archive for s in OOD_SETS if s.name == "textures" and s.archive} == {"dtd"}
    with pytest.raises(KeyError, match="generated"):
        sources.ood_archive("embedded", "textures")
    with pytest.raises(KeyError, match="unknown OOD set 'svhn'"):
        ood_set("imagenet100", "svhn")


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_server_that_trickles_is_stopped_at_the_deadline(tmp_path, mode):
    """One byte every 0.1 s never trips the per-read timeout; the deadline of the attempt stops it."""
    dest = tmp_path / "slow.bin"
    with MisbehavingServer(mode, interval=0.1) as srv:
        url = srv.url("slow.bin")
        t0 = time.monotonic()
        with pytest.raises(DataError) as exc:
            download(url, dest, Expected(md5="0" * 32), retries=0, timeout=30, policy=LOCAL, deadline=1)
        elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 4
    msg = str(exc.value)
    assert f"could not download {url}" in msg and "deadline of 1 s" in msg and "downloads.deadline_s" in msg
    assert not dest.exists()
    if mode == "body":  # bytes so far are reported and kept for the next attempt
        got = (tmp_path / "slow.bin.part").stat().st_size
        assert 3 <= got < 30 and f"with {got:,} bytes of {url} received" in msg and "resumed by the next run" in msg
    else:
        assert "with 0 bytes" in msg


def test_each_retry_has_its_own_deadline(tmp_path):
    with MisbehavingServer("body", interval=0.1) as srv:
        t0 = time.monotonic()
        with pytest.raises(DataError, match="deadline of 0.5 s"):
            download(srv.url("slow.bin"), tmp_path / "slow.bin", Expected(md5="0" * 32), retries=1, backoff=0,
                     timeout=30, policy=LOCAL, deadline=0.5)
        assert srv.requests == 2 and time.monotonic() - t0 < 4


# ----------------------------------------------------------------------------- pinned checksums for http and file
def test_http_mirror_without_a_pinned_checksum_is_refused_before_any_request(tmp_path):
    with FixtureServer() as srv:
        url = srv.add("iSUN.tar.gz", PAYLOAD)
        with pytest.raises(DataError) as exc:
            dl.fetch_archive(_cfg(tmp_path, urls={"isun": url}), "isun")
        assert srv.count() == 0
        msg = str(exc.value)
        assert "refusing to download 'isun'" in msg and url in msg and "plain http" in msg
        assert 'downloads: {checksums: {isun: "sha256:<64 hex digits>"}}' in msg  # way 1: the config
        assert "once over https" in msg and str(tmp_path / "checksums.lock") in msg  # way 2: the lock file
        assert not (tmp_path / "checksums.lock").exists() and not (tmp_path / "data").exists()
        # pinned in the config: the same mirror is accepted
        cfg = _cfg(tmp_path, urls={"isun": url}, checksums={"isun": f"sha256:{_sha(PAYLOAD)}"})
        assert dl.fetch_archive(cfg, "isun").read_bytes() == PAYLOAD
        # a published md5 pins the bytes too (lsun_crop's is the ODIN release's: the fixture does not match it)
        with pytest.raises(DataError, match="checksum mismatch: md5"):
            dl.fetch_archive(_cfg(tmp_path, urls={"lsun_crop": srv.add("LSUN.tar.gz", PAYLOAD)}), "lsun_crop")


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_trust_on_first_use_is_refused_over_http_and_file(tmp_path, scheme):
    lock = tmp_path / "checksums.lock"
    exp = Expected(lock_file=str(lock), lock_key="isun")
    with FixtureServer() as srv:
        if scheme == "http":
            url = srv.add("iSUN.tar.gz", PAYLOAD)
        else:
            (tmp_path / "copy.tar.gz").write_bytes(PAYLOAD)
            url = (tmp_path / "copy.tar.gz").as_uri()
        with pytest.raises(DataError, match="trust on first use happens only over https"):
            download(url, tmp_path / "dl" / "iSUN.tar.gz", exp, retries=0, policy=UrlPolicy(key="isun", mirror=True))
        assert srv.count() == 0
    assert not lock.exists() and not (tmp_path / "dl").exists()


def test_trust_on_first_use_over_https_then_the_http_mirror_is_accepted(tmp_path, https, caplog):
    lock = tmp_path / "checksums.lock"
    with FixtureServer() as srv:
        http_url = srv.add("SUN.tar.gz", PAYLOAD)
        cfg = _cfg(tmp_path, urls={"sun": https(http_url)})
        with caplog.at_level("WARNING", logger="lffood.download"):
            path = dl.fetch_archive(cfg, "sun")
        sha = _sha(PAYLOAD)
        assert dl.read_lock(lock)["sun"]["sha256"] == sha
        assert any(f'downloads: {{checksums: {{sun: "sha256:{sha}"}}}}' in r.getMessage() for r in caplog.records)
        path.unlink()
        assert dl.fetch_archive(_cfg(tmp_path, urls={"sun": http_url}), "sun").read_bytes() == PAYLOAD
        assert srv.count() == 2
