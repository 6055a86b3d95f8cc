"""mdistiller-download: verified, resumable, retried downloads from the packaged manifest (offline).

Files are served by a small HTTP server on 127.0.0.1 (with Range support, a request log and
scripted faults) or through file:// URLs.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mdistiller import download as dl
from tests.helpers.runutil import REPO

PAYLOAD = bytes(range(256)) * 300  # 76,800 bytes


def sha(data):
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        faults = srv.faults.get(self.path) or []
        fault = faults.pop(0) if faults else None
        if isinstance(fault, int):
            self.send_error(fault)
            return
        start = 0
        if rng and fault != "ignore-range":
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */{}".format(len(data)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes {}-{}/{}".format(start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if isinstance(fault, tuple) and fault[0] == "cut":  # announce everything, send a part, hang up
            self.wfile.write(body[: fault[1]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.faults, httpd.requests = {}, {}, []
    httpd.url = "http://127.0.0.1:{}".format(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def entry(url, dest="ckpt/teacher.pth", sha256=None, size=None, **extra):
    e = {"name": "f", "url": url, "base": ".", "dest": dest, "sha256": sha256, "size": size}
    e.update(extra)
    return e


def install(e, root, **kw):
    kw.setdefault("backoff", 0)
    kw.setdefault("timeout", 10)
    logs = []
    status = dl.install(e, str(root), log=logs.append, **kw)
    return status, logs


# ------------------------------------------------------------------ single files
def test_correct_file_is_installed_and_no_part_remains(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    status, _ = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD), size=len(PAYLOAD)), tmp_path)
    dest = tmp_path / "ckpt" / "teacher.pth"
    assert status == "installed"
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "ckpt" / "teacher.pth.part").exists()
    assert server.requests == [("/t.pth", None)]


def test_mismatch_fails_and_leaves_no_file_at_the_destination(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    with pytest.raises(dl.ChecksumError, match="SHA-256 mismatch") as err:
        install(entry(server.url + "/t.pth", sha256=sha(b"the released file")), tmp_path)
    assert sha(PAYLOAD) in str(err.value)  # the hash that was computed is shown
    assert not (tmp_path / "ckpt" / "teacher.pth").exists()
    assert not (tmp_path / "ckpt" / "teacher.pth.part").exists()


def test_size_mismatch_is_refused_before_downloading(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    with pytest.raises(dl.ChecksumError, match="expects"):
        install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD), size=len(PAYLOAD) + 1), tmp_path)
    assert not (tmp_path / "ckpt" / "teacher.pth").exists()


def test_partial_part_file_is_resumed_with_a_range_request(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    part = tmp_path / "ckpt" / "teacher.pth.part"
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:30000])
    status, _ = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path)
    assert status == "installed"
    assert server.requests == [("/t.pth", "bytes=30000-")]
    assert (tmp_path / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD
    assert not part.exists()


def test_dropped_connection_is_retried_and_resumed(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    server.faults["/t.pth"] = [("cut", 10000), 503]
    status, logs = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path, retries=3)
    assert status == "installed"
    assert (tmp_path / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD
    assert server.requests == [("/t.pth", None), ("/t.pth", "bytes=10000-"), ("/t.pth", "bytes=10000-")]
    assert sum("retry" in line for line in logs) == 2


def test_gives_up_after_the_retries_and_keeps_the_part_for_next_time(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    server.faults["/t.pth"] = [("cut", 5000), 503, 503]
    with pytest.raises(dl.DownloadError, match="giving up after 3 attempts"):
        install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path, retries=2)
    assert (tmp_path / "ckpt" / "teacher.pth.part").read_bytes() == PAYLOAD[:5000]
    assert not (tmp_path / "ckpt" / "teacher.pth").exists()
    status, _ = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path)
    assert status == "installed" and server.requests[-1] == ("/t.pth", "bytes=5000-")


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        install(entry(server.url + "/missing.pth", sha256=sha(PAYLOAD)), tmp_path, retries=3)
    assert len(server.requests) == 1


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    server.faults["/t.pth"] = ["ignore-range"]
    part = tmp_path / "ckpt" / "teacher.pth.part"
    part.parent.mkdir()
    part.write_bytes(b"x" * 1000)
    status, _ = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path)
    assert status == "installed"
    assert (tmp_path / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD


def test_corrupt_part_from_an_earlier_run_is_downloaded_again(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    part = tmp_path / "ckpt" / "teacher.pth.part"
    part.parent.mkdir()
    part.write_bytes(b"\0" * 30000)  # right length, wrong bytes: the resumed file cannot verify
    status, logs = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path)
    assert status == "installed"
    assert server.requests == [("/t.pth", "bytes=30000-"), ("/t.pth", None)]
    assert (tmp_path / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD
    assert any("again from the start" in line for line in logs)


def test_present_and_verified_file_is_not_fetched_again(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    dest = tmp_path / "ckpt" / "teacher.pth"
    dest.parent.mkdir()
    dest.write_bytes(PAYLOAD)
    status, _ = install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path)
    assert status == "present"
    assert server.requests == []


def test_present_but_different_file_is_left_untouched_and_reported(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    dest = tmp_path / "ckpt" / "teacher.pth"
    dest.parent.mkdir()
    dest.write_bytes(b"my own teacher")
    with pytest.raises(dl.ChecksumError, match="--force"):
        install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path)
    assert dest.read_bytes() == b"my own teacher" and server.requests == []
    assert install(entry(server.url + "/t.pth", sha256=sha(PAYLOAD)), tmp_path, force=True)[0] == "installed"
    assert dest.read_bytes() == PAYLOAD


def test_unknown_hash_is_refused_without_the_flag_then_installed_with_it(server, tmp_path):
    server.files["/m.pth"] = PAYLOAD
    e = entry(server.url + "/m.pth", dest="wkd_cost_matrix/m.pth")
    with pytest.raises(dl.UnverifiedError) as err:
        install(e, tmp_path)
    assert sha(PAYLOAD) in str(err.value) and "--allow-unverified" in str(err.value)
    assert not (tmp_path / "wkd_cost_matrix" / "m.pth").exists()
    assert (tmp_path / "wkd_cost_matrix" / "m.pth.part").exists()  # kept: no second download needed
    status, logs = install(e, tmp_path, allow_unverified=True)
    assert status == "installed-unverified"
    assert (tmp_path / "wkd_cost_matrix" / "m.pth").read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/m.pth", "bytes={}-".format(len(PAYLOAD)))  # answered 416: nothing re-sent
    assert any(sha(PAYLOAD) in line for line in logs)


def test_git_lfs_pointer_is_never_installed(server, tmp_path):
    server.files["/m.pth"] = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 40000\n"
    with pytest.raises(dl.ChecksumError, match="Git LFS pointer"):
        install(entry(server.url + "/m.pth", dest="m.pth"), tmp_path, allow_unverified=True)
    assert not (tmp_path / "m.pth").exists() and not (tmp_path / "m.pth.part").exists()


def test_file_urls_install_and_resume(tmp_path):
    src = tmp_path / "release" / "t.pth"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    part = tmp_path / "out" / "ckpt" / "teacher.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1234])
    status, _ = install(entry(src.as_uri(), sha256=sha(PAYLOAD)), tmp_path / "out")
    assert status == "installed"
    assert (tmp_path / "out" / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD
    with pytest.raises(dl.ChecksumError):
        install(entry(src.as_uri(), dest="other.pth", sha256=sha(b"x")), tmp_path / "out")
    assert not (tmp_path / "out" / "other.pth").exists()


def test_a_pinned_sha256_prefix_verifies_as_torch_hub_does(tmp_path, monkeypatch):
    """torchvision publishes 8 hex digits of a weight file's SHA-256 in its name: a manifest may pin only those."""
    src = tmp_path / "release" / "weights-abc.pth"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    status, _ = install(entry(src.as_uri(), sha256=sha(PAYLOAD)[:8]), tmp_path / "out")
    assert status == "installed" and (tmp_path / "out" / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD
    wrong = "0" * 8 if not sha(PAYLOAD).startswith("0" * 8) else "f" * 8
    with pytest.raises(dl.ChecksumError):
        install(entry(src.as_uri(), dest="other.pth", sha256=wrong), tmp_path / "out")
    assert not (tmp_path / "out" / "other.pth").exists()
    with pytest.raises(ValueError, match="sha256"):
        dl._check_sha(sha(PAYLOAD)[:7], "m.json", "f")
    # fetch_file: what a run calls for a released file it needs (the COCO R50-FPN teacher): installed once, then read
    manifest = {"files": [entry(src.as_uri(), name="weights", sha256=sha(PAYLOAD)[:8], explicit=True)]}
    monkeypatch.setattr(dl, "load_manifest", lambda path=None: manifest["files"])
    assert dl.select(manifest["files"], []) == []  # explicit entries only when named
    logs = []
    path = dl.fetch_file("weights", str(tmp_path / "run"), log=logs.append)
    assert open(path, "rb").read() == PAYLOAD and len(logs) > 0
    assert dl.fetch_file("weights", str(tmp_path / "run"), log=logs.append) == path


def test_mirror_prefix_replaces_the_host_and_keeps_the_hash(server, tmp_path):
    server.files["/mirror/wkd_cost_matrix/m.pth"] = PAYLOAD
    e = entry("https://github.com/JiamingLv/WKD/raw/main/wkd_cost_matrix/m.pth", dest="m.pth", sha256=sha(PAYLOAD))
    mirrors = [("https://github.com/JiamingLv/WKD/raw/main", server.url + "/mirror/")]
    assert install(e, tmp_path, mirrors=mirrors)[0] == "installed"
    assert server.requests == [("/mirror/wkd_cost_matrix/m.pth", None)]


# ------------------------------------------------------------------ archives (cifar_teachers.tar)
def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, tuple):  # ("symlink", target)
                info.type, info.linkname = tarfile.SYMTYPE, data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TEACHER = "cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth"


def _teachers_entry(url, archive, pinned):
    return {"name": "cifar_teachers", "group": "teachers", "url": url, "base": "download_ckpts",
            "base_env": "MDISTILLER_TEST_CKPT_ROOT", "dest": "cifar_teachers.tar", "sha256": sha(archive),
            "size": len(archive),
            "extract": {"format": "tar", "folder": "cifar_teachers", "members": pinned}}


def test_archive_is_verified_unpacked_and_then_skipped(server, tmp_path):
    archive = _tar([("cifar_teachers", None), ("cifar_teachers/resnet32x4_vanilla", None),
                    (TEACHER, PAYLOAD), ("cifar_teachers/wrn_40_2_vanilla/ckpt_epoch_240.pth", b"wrn")])
    server.files["/cifar_teachers.tar"] = archive
    e = _teachers_entry(server.url + "/cifar_teachers.tar", archive, {TEACHER: sha(PAYLOAD)})
    assert install(e, tmp_path)[0] == "installed"
    folder = tmp_path / "download_ckpts" / "cifar_teachers"
    assert (folder / "resnet32x4_vanilla" / "ckpt_epoch_240.pth").read_bytes() == PAYLOAD
    assert (folder / "wrn_40_2_vanilla" / "ckpt_epoch_240.pth").read_bytes() == b"wrn"
    assert not (tmp_path / "download_ckpts" / "cifar_teachers.tar").exists()  # removed after unpacking
    assert sorted(os.listdir(tmp_path / "download_ckpts")) == ["cifar_teachers"]  # no staging left
    record = json.loads((folder / dl.RECORD_NAME).read_text())
    assert record["files"]["wrn_40_2_vanilla/ckpt_epoch_240.pth"] == sha(b"wrn")
    assert install(e, tmp_path)[0] == "present" and len(server.requests) == 1
    # a teacher changed after unpacking is detected; --force replaces the folder
    (folder / "wrn_40_2_vanilla" / "ckpt_epoch_240.pth").write_bytes(b"tampered")
    with pytest.raises(dl.ChecksumError, match="changed since it was downloaded"):
        install(e, tmp_path)
    assert install(e, tmp_path, force=True)[0] == "installed"
    assert (folder / "wrn_40_2_vanilla" / "ckpt_epoch_240.pth").read_bytes() == b"wrn"
    assert sorted(os.listdir(tmp_path / "download_ckpts")) == ["cifar_teachers"]


def test_archive_member_mismatch_unpacks_nothing(server, tmp_path):
    archive = _tar([(TEACHER, b"not the released teacher")])
    server.files["/cifar_teachers.tar"] = archive
    e = _teachers_entry(server.url + "/cifar_teachers.tar", archive, {TEACHER: sha(PAYLOAD)})
    with pytest.raises(dl.ChecksumError, match="resnet32x4_vanilla"):
        install(e, tmp_path)
    assert not (tmp_path / "download_ckpts" / "cifar_teachers").exists()
    assert sorted(os.listdir(tmp_path / "download_ckpts")) == ["cifar_teachers.tar"]


@pytest.mark.parametrize("members", [
    [("cifar_teachers/../../evil.pth", b"x")],
    [("/tmp/evil.pth", b"x")],
    [("other_folder/x.pth", b"x")],
    [("cifar_teachers/link", ("symlink", "/etc/passwd"))],
])
def test_archive_with_unsafe_members_is_refused(server, tmp_path, members):
    archive = _tar([(TEACHER, PAYLOAD)] + members)
    server.files["/cifar_teachers.tar"] = archive
    e = _teachers_entry(server.url + "/cifar_teachers.tar", archive, {TEACHER: sha(PAYLOAD)})
    with pytest.raises(dl.DownloadError, match="refusing archive member"):
        install(e, tmp_path)
    assert not (tmp_path / "download_ckpts" / "cifar_teachers").exists()
    assert not (tmp_path / "evil.pth").exists()


def test_archive_base_follows_the_checkpoint_root_variable(server, tmp_path, monkeypatch):
    archive = _tar([(TEACHER, PAYLOAD)])
    server.files["/cifar_teachers.tar"] = archive
    monkeypatch.setenv("MDISTILLER_TEST_CKPT_ROOT", str(tmp_path / "elsewhere"))
    e = _teachers_entry(server.url + "/cifar_teachers.tar", archive, {TEACHER: sha(PAYLOAD)})
    install(e, tmp_path / "root")
    assert (tmp_path / "elsewhere" / "cifar_teachers" / "resnet32x4_vanilla" / "ckpt_epoch_240.pth").exists()


def test_unpacked_folder_from_an_older_script_is_checked_not_refetched(server, tmp_path):
    folder = tmp_path / "download_ckpts" / "cifar_teachers" / "resnet32x4_vanilla"
    folder.mkdir(parents=True)
    (folder / "ckpt_epoch_240.pth").write_bytes(PAYLOAD)
    archive = _tar([(TEACHER, PAYLOAD)])
    e = _teachers_entry(server.url + "/cifar_teachers.tar", archive, {TEACHER: sha(PAYLOAD)})
    status, logs = install(e, tmp_path)
    assert status == "present" and server.requests == []
    assert any("1 pinned file(s) verified" in line for line in logs)
    (folder / "ckpt_epoch_240.pth").write_bytes(b"other")
    with pytest.raises(dl.ChecksumError):
        install(e, tmp_path)


# ------------------------------------------------------------------ manifest and command line
def test_packaged_manifest_is_valid_and_matches_the_model_zoo_layout():
    entries = dl.load_manifest()
    names = {e["name"] for e in entries}
    assert {"cifar_teachers", "wkd_cost_cifar100_resnet32x4", "wkd_cost_cifar100_wrn_40_2",
            "wkd_cost_imagenet_resnet34", "wkd_cost_imagenet_resnet50"} <= names
    for e in entries:
        assert e["url"].startswith("https://")
    teachers = next(e for e in entries if e["name"] == "cifar_teachers")
    assert teachers["base"] == "download_ckpts" and teachers["extract"]["folder"] == "cifar_teachers"
    for member in teachers["extract"]["members"]:
        assert member.startswith("cifar_teachers/") and member.endswith("_vanilla/ckpt_epoch_240.pth")
    matrices = [e["dest"] for e in entries if e.get("group") == "cost-matrices"]
    assert all(d.startswith("wkd_cost_matrix/") for d in matrices)


def test_official_wkd_cost_matrices_are_pinned_and_a_different_file_is_refused(server, tmp_path):
    """The four official matrices install without --allow-unverified (SHA-256 and size from the WKD repository's
    files); bytes of the pinned size but another hash are refused and nothing is installed."""
    matrices = [e for e in dl.load_manifest() if e.get("group") == "cost-matrices"]
    assert len(matrices) == 4
    for e in matrices:
        assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"]) and e["size"] > 0 and "mdistiller-cost-matrix" in e["hint"]
    first = dict(matrices[0], url=server.url + "/m.pth")
    server.files["/m.pth"] = b"\0" * first["size"]
    with pytest.raises(dl.ChecksumError):
        dl.install(first, root=str(tmp_path), retries=0, backoff=0, log=lambda *a: None)
    assert not os.path.exists(dl.destination(first, str(tmp_path)))


def test_load_manifest_rejects_paths_that_leave_the_root(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"files": [{"name": "x", "url": "https://h/x", "dest": "../x", "sha256": None}]}))
    with pytest.raises(ValueError, match="below the root"):
        dl.load_manifest(str(bad))


def _write_manifest(tmp_path, files):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema": 1, "files": files}))
    return str(path)


def test_main_reports_failures_and_exits_nonzero(server, tmp_path, capsys):
    server.files["/good.pth"] = PAYLOAD
    server.files["/bad.pth"] = PAYLOAD
    server.files["/unpinned.pth"] = PAYLOAD
    manifest = _write_manifest(tmp_path, [
        dict(entry(server.url + "/good.pth", dest="good.pth", sha256=sha(PAYLOAD)), name="good", group="g"),
        dict(entry(server.url + "/bad.pth", dest="bad.pth", sha256=sha(b"x")), name="bad", group="g"),
        dict(entry(server.url + "/unpinned.pth", dest="unpinned.pth"), name="unpinned", group="g"),
        dict(entry(server.url + "/gone.pth", dest="gone.pth", optional=True, hint="make it yourself"),
             name="optional-missing", group="h"),
    ])
    rc = dl.main(["--manifest", manifest, "--root", str(tmp_path), "--backoff", "0", "--retries", "0"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "2 of 4 file(s) failed: bad, unpinned" in err and "--allow-unverified" in err
    assert "WARNING (optional file, skipped)" in out and "make it yourself" in out
    assert (tmp_path / "good.pth").exists()
    assert not (tmp_path / "bad.pth").exists() and not (tmp_path / "unpinned.pth").exists()
    assert dl.main(["--manifest", manifest, "--root", str(tmp_path), "h"]) == 0  # optional only: exit 0
    with pytest.raises(SystemExit) as exit_info:  # a mistake: one line, exit 2
        dl.main(["--manifest", manifest, "--root", str(tmp_path), "nosuch"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("mdistiller-download: error: unknown file or group 'nosuch'")


def test_shell_script_runs_the_downloader(server, tmp_path):
    server.files["/t.pth"] = PAYLOAD
    manifest = _write_manifest(tmp_path, [entry(server.url + "/t.pth", sha256=sha(PAYLOAD))])
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", os.path.join(REPO, "download_ckpts.sh"), "--manifest", manifest,
                           "--root", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ckpt" / "teacher.pth").read_bytes() == PAYLOAD
    listing = subprocess.run(["bash", os.path.join(REPO, "download_ckpts.sh"), "--list"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "cifar_teachers" in listing.stdout
