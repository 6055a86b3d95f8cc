"""Verified downloads of the released files this project uses (``mdistiller-download``).

Every file comes from the manifest shipped in the package
(``mdistiller/download_manifest.json``): its URL, where it goes, its SHA-256 and,
when known, its size. A file is

* downloaded to ``<dest>.part``; an interrupted download is resumed from there
  (HTTP ``Range``) on the next attempt or the next run, so ``.part`` files are kept;
* retried with exponential backoff on network errors and HTTP 408/429/5xx;
* verified (size, SHA-256) and only then renamed onto ``<dest>`` (atomic), so a
  teacher path never holds a partial or corrupt file;
* skipped when ``<dest>`` already exists and its SHA-256 matches.

A SHA-256 mismatch is an error: the bad bytes are deleted and nothing is installed.
A file whose SHA-256 is not pinned in the manifest (``null``) is downloaded and
hashed but not installed unless ``--allow-unverified`` is given; the computed hash
is printed so that it can be pinned.

Archives (mdistiller's ``cifar_teachers.tar``) are unpacked after verification
into a temporary folder that is renamed into place once every member has been
checked: only regular files and folders below the expected top folder are
accepted (no links, absolute paths or ``..``), and members whose SHA-256 the
manifest pins are verified. The unpacked folder gets a ``.mdistiller-download.json``
record of every file's SHA-256, which later runs verify.

Only the standard library is used, so ``python -m mdistiller.download`` works
before torch is installed.
"""
import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources

from ._cli import ArgumentParser, add_debug_flag, run_main

MANIFEST_NAME = "download_manifest.json"
PART_SUFFIX = ".part"
RECORD_NAME = ".mdistiller-download.json"
CHUNK = 1 << 20
USER_AGENT = "mdistiller-download"
LFS_POINTER_PREFIX = b"version https://git-lfs"
RETRYABLE_HTTP = (408, 425, 429, 500, 502, 503, 504)
MIN_SHA_PREFIX = 8  # shortest pinned SHA-256 prefix accepted (torchvision's file names carry 8 hex digits)


class DownloadError(RuntimeError):
    """A file could not be fetched or installed."""


class ChecksumError(DownloadError):
    """A file's SHA-256 (or size) differs from the manifest's."""


class UnverifiedError(DownloadError):
    """The manifest pins no SHA-256 for a file and ``allow_unverified`` was not given."""


class _Retryable(Exception):
    pass


# --------------------------------------------------------------------------- manifest
def load_manifest(path=None):
    """The manifest's entries (a list of dicts); ``path=None`` reads the one shipped in the package."""
    if path is None:
        text = resources.files("mdistiller").joinpath(MANIFEST_NAME).read_text(encoding="utf-8")
        where = "mdistiller/" + MANIFEST_NAME
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        where = path
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError("{}: not a JSON manifest ({})".format(where, e)) from None
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("{}: expected an object with a 'files' list".format(where))
    names = set()
    for entry in entries:
        for key in ("name", "url", "dest"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError("{}: every file needs a non-empty {!r} ({})".format(where, key, entry))
        if entry["name"] in names:
            raise ValueError("{}: duplicate name {!r}".format(where, entry["name"]))
        names.add(entry["name"])
        _check_sha(entry.get("sha256"), where, entry["name"])
        for member, digest in (entry.get("extract") or {}).get("members", {}).items():
            _check_sha(digest, where, entry["name"] + ":" + member)
        _check_relative(entry["dest"], where)
        _check_relative(entry.get("base") or ".", where)
    return entries


def _check_sha(value, where, name):
    if value is None:
        return
    if not (isinstance(value, str) and MIN_SHA_PREFIX <= len(value) <= 64
            and all(c in "0123456789abcdef" for c in value)):
        raise ValueError("{}: sha256 of {} must be 64 lowercase hex digits (or the first {} or more where only those "
                         "are published), or null; got {!r}".format(where, name, MIN_SHA_PREFIX, value))


def sha_matches(actual, pinned):
    """Whether the SHA-256 ``actual`` is the pinned one: equal to it, or starting with it when the manifest pins a
    prefix (torchvision publishes the first 8 hex digits in its weight files' names; torch.hub checks the same)."""
    return actual.startswith(pinned)


def _check_relative(path, where):
    parts = path.replace("\\", "/").split("/")
    if os.path.isabs(path) or ".." in parts:
        raise ValueError("{}: paths must be relative and stay below the root: {!r}".format(where, path))


def select(entries, names):
    """Entries whose name or group is in ``names``; when ``names`` is empty, every entry but those marked
    ``"explicit": true`` (large files few users need, fetched only when named or by the code that needs them)."""
    if not names:
        return [e for e in entries if not e.get("explicit")]
    known = {e["name"] for e in entries} | {e.get("group") for e in entries if e.get("group")}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError("unknown file or group {}; known: {}".format(", ".join(map(repr, unknown)), ", ".join(sorted(known))))
    return [e for e in entries if e["name"] in names or e.get("group") in names]


def base_dir(entry, root="."):
    """The folder ``entry['dest']`` is relative to: ``$base_env`` when set, else ``root/base``."""
    env = entry.get("base_env")
    if env and os.environ.get(env):
        return os.environ[env]
    return os.path.normpath(os.path.join(root, entry.get("base") or "."))


def destination(entry, root="."):
    return os.path.normpath(os.path.join(base_dir(entry, root), entry["dest"]))


def apply_mirrors(url, mirrors):
    """Replace a URL prefix (``mirrors``: list of ``(old_prefix, new_prefix)``); hashes still apply."""
    for old, new in mirrors:
        if url.startswith(old):
            return new.rstrip("/") + url[len(old.rstrip("/")):]
    return url


# --------------------------------------------------------------------------- hashing
def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- transfer
class _FileResponse:
    """``file://`` URLs with the same interface as an HTTP response (offset honoured like a Range request)."""

    def __init__(self, path, offset):
        size = os.path.getsize(path)
        self._f = open(path, "rb")
        if 0 < offset <= size:
            self._f.seek(offset)
            self.status = 206
            self.length = size - offset
            self.content_range = "bytes {}-{}/{}".format(offset, size - 1, size)
        else:
            self.status = 200
            self.length = size
            self.content_range = None

    def read(self, n):
        return self._f.read(n)

    def close(self):
        self._f.close()


def _open(url, offset, timeout):
    """``(response, status, length_or_None, content_range_or_None)``; raises HTTPError/URLError/OSError."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = urllib.request.url2pathname(parsed.path)
        if offset and os.path.getsize(path) == offset:
            raise urllib.error.HTTPError(url, 416, "Range Not Satisfiable", {}, None)
        resp = _FileResponse(path, offset)
        return resp, resp.status, resp.length, resp.content_range
    if parsed.scheme not in ("http", "https"):
        raise DownloadError("unsupported URL scheme in {!r} (http, https and file only)".format(url))
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = "bytes={}-".format(offset)
    resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    length = resp.headers.get("Content-Length")
    return resp, resp.status, int(length) if length and length.isdigit() else None, resp.headers.get("Content-Range")


def fetch(url, part, size=None, retries=4, backoff=1.0, timeout=60.0, log=print):
    """Download ``url`` into ``part``, resuming from what ``part`` already holds.

    Returns the number of bytes that were already in ``part`` when the first
    request was made (0 for a fresh download). ``size`` (when known) bounds the
    download. Network errors and HTTP 408/425/429/5xx are retried ``retries``
    times, sleeping ``backoff · 2^k`` seconds; other HTTP errors are raised at once.
    """
    os.makedirs(os.path.dirname(os.path.abspath(part)), exist_ok=True)
    resumed_from = os.path.getsize(part) if os.path.exists(part) else 0
    for attempt in range(retries + 1):
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        if size is not None and offset > size:
            _remove(part)
            offset = 0
        if size is not None and offset == size:
            return resumed_from
        try:
            _transfer(url, part, offset, size, timeout)
            return resumed_from
        except _Retryable as e:
            if attempt == retries:
                raise DownloadError("{}: giving up after {} attempts: {}".format(url, retries + 1, e)) from None
            delay = backoff * (2 ** attempt)
            log("  retry {}/{} in {:.0f}s ({})".format(attempt + 1, retries, delay, e))
            time.sleep(delay)
    return resumed_from  # pragma: no cover


def _transfer(url, part, offset, size, timeout):
    try:
        resp, status, length, content_range = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return  # nothing left to fetch past `offset`: the file is complete (verification decides)
        if e.code in RETRYABLE_HTTP:
            raise _Retryable("HTTP {}".format(e.code)) from None
        raise DownloadError("{}: HTTP {} {}".format(url, e.code, e.reason)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if isinstance(e, FileNotFoundError):
            raise DownloadError("{}: no such file".format(url)) from None
        raise _Retryable(str(getattr(e, "reason", e))) from None
    try:
        if offset and status == 206:
            if not (content_range or "").startswith("bytes {}-".format(offset)):
                raise _Retryable("server answered a different range: {!r}".format(content_range))
            mode, start = "ab", offset
        else:  # 200: the server ignored the Range header -> start over
            mode, start = "wb", 0
        expected_total = start + length if length is not None else None
        if size is not None and expected_total is not None and expected_total != size:
            raise ChecksumError(
                "{}: the server sends {} bytes, the manifest expects {}".format(url, expected_total, size))
        received = 0
        with open(part, mode) as f:
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    raise _Retryable("connection lost after {} bytes: {}".format(start + received, e)) from None
                if not block:
                    break
                received += len(block)
                if size is not None and start + received > size:
                    raise ChecksumError("{}: more than the {} bytes the manifest expects".format(url, size))
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        if length is not None and received < length:
            raise _Retryable("connection closed after {} of {} bytes".format(start + received, start + length))
    finally:
        resp.close()


# --------------------------------------------------------------------------- install
def download_verified(url, dest, sha256=None, size=None, allow_unverified=False, force=False,
                      retries=4, backoff=1.0, timeout=60.0, log=print):
    """Install ``url`` at ``dest`` only if its SHA-256 (and size) match.

    Returns ``"present"`` (``dest`` already there and verified; nothing fetched),
    ``"present-unverified"`` (there, but no hash to check it against),
    ``"installed"`` or ``"installed-unverified"``. Raises :class:`ChecksumError`
    on a mismatch (nothing is left at ``dest`` or in ``dest.part``) and
    :class:`UnverifiedError` when no hash is pinned and ``allow_unverified`` is
    false (the download stays in ``dest.part`` so a later run need not fetch it again).
    """
    if os.path.exists(dest) and not force:
        if sha256 is None:
            log("  present (no pinned SHA-256; its SHA-256 is {})".format(sha256_file(dest)))
            return "present-unverified"
        actual = sha256_file(dest)
        if sha_matches(actual, sha256):
            return "present"
        raise ChecksumError(
            "{} exists but its SHA-256 is {}, not the released file's {}. It was left untouched: "
            "delete it (or pass --force) to download the released file.".format(dest, actual, sha256))
    part = dest + PART_SUFFIX
    resumed_from = fetch(url, part, size, retries, backoff, timeout, log)
    try:
        actual = _verify_part(part, url, sha256, size)
    except ChecksumError:
        if not resumed_from:
            raise
        # the kept part may come from another version of the file: one fresh download
        log("  the resumed download does not verify; downloading {} again from the start".format(url))
        fetch(url, part, size, retries, backoff, timeout, log)
        actual = _verify_part(part, url, sha256, size)
    if sha256 is None:
        if not allow_unverified:
            raise UnverifiedError(
                "{}: the manifest pins no SHA-256 for this file, so it was not installed. Its SHA-256 is {}\n"
                "  (pin it in mdistiller/download_manifest.json, or rerun with --allow-unverified to install it "
                "as is; the download is kept in {})".format(dest, actual, part))
        log("  WARNING: installed without verification (no pinned SHA-256); its SHA-256 is {}".format(actual))
    os.replace(part, dest)
    return "installed" if sha256 is not None else "installed-unverified"


def _verify_part(part, url, sha256, size):
    got = os.path.getsize(part)
    with open(part, "rb") as f:
        head = f.read(len(LFS_POINTER_PREFIX))
    if head == LFS_POINTER_PREFIX:
        _remove(part)
        raise ChecksumError("{} served a Git LFS pointer file, not the file itself; nothing was installed".format(url))
    if size is not None and got != size:
        _remove(part)
        raise ChecksumError("{}: downloaded {} bytes, expected {}; nothing was installed".format(url, got, size))
    actual = sha256_file(part)
    if sha256 is not None and not sha_matches(actual, sha256):
        _remove(part)
        raise ChecksumError(
            "SHA-256 mismatch for {}:\n  expected {}\n  got      {}\n"
            "The download was deleted and nothing was installed.".format(url, sha256, actual))
    return actual


# --------------------------------------------------------------------------- archives
def _safe_members(tar, top):
    """Regular files and folders of ``tar`` below ``top/``; anything else is refused."""
    members = []
    for m in tar.getmembers():
        name = m.name.replace("\\", "/")
        while name.startswith("./"):
            name = name[2:]
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            continue
        if name.startswith("/") or ".." in parts or parts[0] != top:
            raise DownloadError("refusing archive member {!r}: outside {}/".format(m.name, top))
        if not (m.isfile() or m.isdir()):
            raise DownloadError("refusing archive member {!r}: not a regular file or folder".format(m.name))
        members.append(("/".join(parts), m))
    return members


def extract_verified(archive, into, top, pinned=None, log=print):
    """Unpack ``archive`` (tar) so that ``into/top`` appears at once, fully checked, or not at all.

    ``pinned`` maps member names (``top/...``) to SHA-256: each must be present
    and match. Returns ``{relative path below top: sha256}`` for every file.
    """
    pinned = dict(pinned or {})
    final = os.path.join(into, top)
    staging = os.path.join(into, ".{}.extracting".format(top))
    shutil.rmtree(staging, ignore_errors=True)
    hashes = {}
    try:
        os.makedirs(os.path.join(staging, top))
        with tarfile.open(archive) as tar:
            for name, member in _safe_members(tar, top):
                target = os.path.join(staging, *name.split("/"))
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                digest = hashlib.sha256()
                source = tar.extractfile(member)
                with open(target, "wb") as out:
                    for block in iter(lambda: source.read(CHUNK), b""):
                        digest.update(block)
                        out.write(block)
                actual = digest.hexdigest()
                if name in pinned and not sha_matches(actual, pinned[name]):
                    raise ChecksumError(
                        "SHA-256 mismatch for {} in {}:\n  expected {}\n  got      {}\n"
                        "Nothing was unpacked.".format(name, archive, pinned[name], actual))
                hashes[name.split("/", 1)[1] if "/" in name else name] = actual
        missing = [n for n in pinned if (n.split("/", 1)[1] if "/" in n else n) not in hashes]
        if missing:
            raise ChecksumError("{} lacks {}; nothing was unpacked".format(archive, ", ".join(missing)))
        with open(os.path.join(staging, top, RECORD_NAME), "w") as f:
            json.dump({"archive": os.path.basename(archive), "archive_sha256": sha256_file(archive),
                       "files": hashes}, f, indent=1, sort_keys=True)
        old = final + ".replaced"
        if os.path.isdir(final):  # an empty folder, or one being replaced (--force)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(os.path.join(staging, top), final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return hashes


def check_extracted(folder, top, pinned=None):
    """Verify an unpacked folder: its pinned members and, when it has one, its download record.

    Returns the number of files verified; raises :class:`ChecksumError` on any difference.
    """
    checked = 0
    for name, digest in (pinned or {}).items():
        rel = name.split("/", 1)[1] if name.startswith(top + "/") else name
        path = os.path.join(folder, *rel.split("/"))
        if not os.path.isfile(path):
            raise ChecksumError("{} lacks {}: delete the folder to download it again".format(folder, rel))
        actual = sha256_file(path)
        if not sha_matches(actual, digest):
            raise ChecksumError("{} has SHA-256 {}, not the released file's {}: delete the folder to download "
                                "it again".format(path, actual, digest))
        checked += 1
    record = os.path.join(folder, RECORD_NAME)
    if os.path.isfile(record):
        with open(record) as f:
            files = json.load(f).get("files", {})
        for rel, digest in sorted(files.items()):
            path = os.path.join(folder, *rel.split("/"))
            if not os.path.isfile(path) or sha256_file(path) != digest:
                raise ChecksumError("{} is missing or changed since it was downloaded: delete {} to download it "
                                    "again".format(path, folder))
            checked += 1
    return checked


# --------------------------------------------------------------------------- entries
def install(entry, root=".", allow_unverified=False, force=False, mirrors=(), retries=4, backoff=1.0,
            timeout=60.0, log=print):
    """Install one manifest entry; returns a status string (see :func:`download_verified`)."""
    url = apply_mirrors(entry["url"], mirrors)
    dest = destination(entry, root)
    extract = entry.get("extract")
    kwargs = dict(sha256=entry.get("sha256"), size=entry.get("size"), allow_unverified=allow_unverified,
                  retries=retries, backoff=backoff, timeout=timeout, log=log)
    if not extract:
        return download_verified(url, dest, force=force, **kwargs)
    top = extract["folder"]
    into = base_dir(entry, root)
    folder = os.path.join(into, top)
    pinned = extract.get("members") or {}
    if os.path.isdir(folder) and os.listdir(folder) and not force:
        checked = check_extracted(folder, top, pinned)
        if not os.path.isfile(os.path.join(folder, RECORD_NAME)):
            log("  {} was not unpacked by mdistiller-download: {} pinned file(s) verified, the others "
                "cannot be (delete the folder to download it again)".format(folder, checked))
        return "present"
    status = download_verified(url, dest, force=force, **kwargs)
    log("  unpacking {} into {}".format(dest, into))
    extract_verified(dest, into, top, pinned, log=log)
    if not extract.get("keep_archive", False):
        _remove(dest)
    return status


def run(entries, root=".", allow_unverified=False, force=False, mirrors=(), retries=4, backoff=1.0,
        timeout=60.0, log=print):
    """Install ``entries``; returns ``(statuses, failures)`` (dicts by name). Never raises for one file."""
    statuses, failures = {}, {}
    for entry in entries:
        log("{}: {}".format(entry["name"], destination(entry, root)))
        try:
            statuses[entry["name"]] = install(entry, root, allow_unverified, force, mirrors, retries, backoff,
                                              timeout, log)
            log("  " + statuses[entry["name"]])
        except (DownloadError, OSError, tarfile.TarError) as e:
            # an optional file that cannot be fetched is skipped; a wrong or unverifiable one never is
            if entry.get("optional") and not isinstance(e, (ChecksumError, UnverifiedError)):
                log("  WARNING (optional file, skipped): {}".format(e))
                if entry.get("hint"):
                    log("  " + entry["hint"])
                statuses[entry["name"]] = "skipped"
            else:
                log("  ERROR: {}".format(e))
                failures[entry["name"]] = e
    return statuses, failures


def fetch_file(name, root=".", log=print):
    """The installed path of manifest entry ``name``, downloaded and verified first when it is missing (what a
    run does for a released file it needs, as torch.hub does); ``FileNotFoundError`` saying what failed and the
    command to run otherwise."""
    (entry,) = select(load_manifest(), [name])
    dest = destination(entry, root)
    if os.path.exists(dest):
        return dest
    log("{}: fetching {} (verified against the manifest's SHA-256)".format(name, entry["url"]))
    try:
        install(entry, root, log=log)
    except (DownloadError, OSError) as e:
        raise FileNotFoundError("{} is missing ({}) and could not be fetched: {}. Run `mdistiller-download {}` "
                                "where you are online, from this folder".format(
                                    dest, entry.get("description", name), str(e).splitlines()[0], name)) from None
    return dest


def _list(entries, root):
    for e in entries:
        dest = destination(e, root)
        target = os.path.join(base_dir(e, root), e["extract"]["folder"]) if e.get("extract") else dest
        there = "present" if os.path.exists(target) else ("partial" if os.path.exists(dest + PART_SUFFIX) else "missing")
        print("{:<34} {:<14} {:<8} sha256 {}  {}".format(
            e["name"], e.get("group", ""), there, e.get("sha256") or "NOT PINNED", target))


def build_parser():
    p = ArgumentParser(
        prog="mdistiller-download",
        description="Download the released teachers and cost matrices listed in the package's manifest, "
                    "verifying each file's SHA-256 (resumes partial downloads, retries, skips verified files).")
    p.add_argument("names", nargs="*", help="files or groups to fetch (default: all but the 'explicit' ones; see --list)")
    p.add_argument("--list", action="store_true", help="list the manifest's files and whether they are present")
    p.add_argument("--teachers-only", action="store_true", help="only the 'teachers' group")
    p.add_argument("--root", default=".", help="folder the manifest's paths are relative to (default: current folder)")
    p.add_argument("--manifest", default=None, help="another manifest (JSON) instead of the packaged one")
    p.add_argument("--allow-unverified", action="store_true",
                   help="install files whose SHA-256 the manifest does not pin (their hash is printed)")
    p.add_argument("--force", action="store_true", help="download again even if the destination exists")
    p.add_argument("--mirror", action="append", default=[], metavar="PREFIX=NEWPREFIX",
                   help="fetch URLs starting with PREFIX from NEWPREFIX instead (hashes still apply)")
    p.add_argument("--retries", type=int, default=4, help="retries per file on network errors (default 4)")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled each time")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    add_debug_flag(p)
    return p


def main(argv=None):
    parser = build_parser()
    return run_main(_main, parser.parse_args(argv), parser.prog)


def _main(args):
    entries = load_manifest(args.manifest)
    names = list(args.names) + (["teachers"] if args.teachers_only else [])
    chosen = select(entries, names)
    mirrors = []
    for m in args.mirror:
        if "=" not in m:
            raise ValueError("--mirror expects PREFIX=NEWPREFIX, got {!r}".format(m))
        mirrors.append(tuple(m.split("=", 1)))
    if args.list:
        _list(chosen, args.root)
        return 0
    statuses, failures = run(chosen, args.root, args.allow_unverified, args.force, mirrors, args.retries,
                             args.backoff, args.timeout, log=lambda s: print(s, flush=True))
    if failures:
        refused = [n for n, e in failures.items() if isinstance(e, UnverifiedError)]
        print("\nmdistiller-download: {} of {} file(s) failed: {}".format(
            len(failures), len(chosen), ", ".join(failures)), file=sys.stderr)
        if refused:
            print("  not installed because no SHA-256 is pinned for them: {} (their computed hashes are printed "
                  "above; rerun with --allow-unverified to install them anyway)".format(", ".join(refused)),
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
