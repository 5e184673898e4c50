"""Downloads: atomic, resumable, verified (md5 or lock file), no second download, clear offline errors."""

import json
import socket

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


def test_lock_file_records_then_verifies(tmp_path):
    lock = tmp_path / "resources" / "checksums.lock"
    dest = tmp_path / "dl" / "iSUN.tar.gz"
    exp = Expected(lock_file=str(lock), lock_key="isun")
    with FixtureServer() as srv:
        url = srv.add("iSUN.tar.gz", PAYLOAD)
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


def test_first_download_without_checksum_is_announced_and_locked_under_its_final_name(tmp_path, caplog):
    lock = tmp_path / "checksums.lock"
    dest = tmp_path / "dl" / "isun" / "iSUN.tar.gz"
    exp = Expected(lock_file=str(lock), lock_key="isun")
    with FixtureServer() as srv:
        url = srv.add("iSUN.tar.gz", PAYLOAD)
        with caplog.at_level("INFO", logger="lffood.download"):
            download(url, dest, exp, retries=0, policy=LOCAL)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        sha = dl.file_digest(dest, "sha256")
        assert len(warnings) == 1
        assert "trusted" in warnings[0] and "first use" in warnings[0] and sha in warnings[0]
        assert f"Commit {lock}" in warnings[0] and "'isun'" in warnings[0]
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
        cfg = _cfg(tmp_path, urls={"isun": url})
        with pytest.raises(DataError, match="downloads.urls.isun"):
            dl.fetch_archive(cfg, "isun")
        assert srv.count("elsewhere/iSUN.tar.gz") == 0


@pytest.mark.parametrize("url", ["ftp://ftp.example.org/iSUN.tar.gz", "data:,hello", "gopher://x/1"])
def test_other_schemes_are_refused_even_as_mirror(tmp_path, url):
    for policy in (UrlPolicy(key="isun"), LOCAL):
        with pytest.raises(DataError, match="only https, http and") as exc:
            download(url, tmp_path / "iSUN.tar.gz", retries=0, policy=policy)
        assert url in str(exc.value)
    with pytest.raises(DataError, match="downloads.urls.isun"):
        dl.fetch_archive(_cfg(tmp_path, urls={"isun": url}), "isun")
    assert _leftovers(tmp_path) == []


def test_file_url_only_as_a_named_mirror(tmp_path):
    local = tmp_path / "mirror" / "iSUN.tar.gz"
    local.parent.mkdir()
    local.write_bytes(PAYLOAD)
    uri = local.as_uri()
    with pytest.raises(DataError, match="file:// is only accepted .* downloads.urls.isun"):
        download(uri, tmp_path / "a" / "iSUN.tar.gz", policy=UrlPolicy(key="isun"))
    assert not (tmp_path / "a").exists()
    cfg = _cfg(tmp_path, urls={"isun": uri})
    path = dl.fetch_archive(cfg, "isun")
    assert path.read_bytes() == PAYLOAD and not path.with_name("iSUN.tar.gz.part").exists()
    assert dl.read_lock(tmp_path / "checksums.lock")["isun"]["url"] == uri


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
            download(srv.url("missing.tar"), tmp_path / "m.tar", retries=3, backoff=0, policy=LOCAL)
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
        receipt = tmp_path / "receipt.json"
        path = dl.fetch_archive(cfg, "isun", receipt=receipt)
        assert path == tmp_path / "data" / "downloads" / "isun" / "iSUN.tar.gz"
        info = json.loads(receipt.read_text())
        assert info["url"] == url and info["sha256_lock"] == dl.file_digest(path, "sha256")
        assert "isun" in dl.describe_sources(cfg)


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
    assert cfg["downloads"] == {"dir": None, "lock_file": "resources/checksums.lock", "urls": {}, "checksums": {}, "timeout_s": 60,
                                "retries": 3}
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
        cfg.write_text(f"data_dir: {tmp_path}/data\ndownloads: {{lock_file: {tmp_path}/l.lock, urls: {{sun: '{url}'}}}}\n"
                       "benchmarks: {b: {dataset: {source: embedded, ood_sets: [far]}}}\nrun: [b]\n")
        assert main(["download", "--list", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert f"place: {tmp_path}/data/downloads/places365/test_256.tar" in out and url in out
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
