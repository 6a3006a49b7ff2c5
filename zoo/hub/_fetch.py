"""Download weight files into the cache: verified, atomic, locked, resumable, offline-aware.

Only the standard library is used (urllib). The rules, in the order they apply:

* **Schemes**: ``https://`` and ``file://``. Plain ``http://`` is refused unless
  ``ZOO_ALLOW_HTTP=1`` (meant for loopback tests and trusted local mirrors); a redirect from
  https to http is refused the same way. Other schemes (ftp, data ...) are always refused.
* **Mirror**: ``ZOO_MIRROR=<base URL>`` rewrites every http(s) URL to ``<base>/<file name>``,
  where the file name is the last path segment of the original URL (query and fragment
  dropped): ``https://storage.googleapis.com/tensorflow/keras-applications/resnet/r50.h5`` with
  ``ZOO_MIRROR=https://mirror.lan/zoo`` becomes ``https://mirror.lan/zoo/r50.h5``. The mirror is
  one flat folder; it may be ``file:///shared/weights``. file:// URLs are never rewritten.
* **Cache**: ``$ZOO_HOME/weights/<key>/<file name>`` (``ZOO_HOME`` defaults to
  ``~/.cache/zoo``). ``<key>`` is the first 16 hex digits of the expected hash, so one content
  lives in one place whatever URL or mirror served it; a URL without a known hash is keyed
  ``url-<16 hex of sha256(url)>``. Next to each file: ``<file>.lock`` (the cross-process lock,
  kept), ``<file>.verified`` (JSON: hash, size, mtime of the last verification) and, only while
  a download is unfinished, ``<file>.part``. A file is trusted only under its final name, and
  it only gets that name (``os.replace``) after its hash matched. A cached file is hashed again
  whenever its size or mtime differ from its ``.verified`` record.
* **Corrupted cache**: a cached file that fails re-verification is deleted with a warning and
  downloaded again; with ``ZOO_OFFLINE=1`` it is an error naming both hashes.
* **Offline**: ``ZOO_OFFLINE=1`` never opens a network connection (file:// still works); a
  missing file is an error that names the URL, the hash and the exact cache path to put it.
* **Retries**: connection errors, timeouts, truncated bodies and HTTP 5xx/408/429 are retried
  ``ZOO_RETRIES`` times (default 4) with exponential backoff ``ZOO_BACKOFF * 2**n`` seconds
  (default 1 s, capped at 60 s); ``ZOO_TIMEOUT`` (default 30 s) bounds every socket wait, so a
  stalled server counts as a failed attempt. A retry resumes the ``.part`` file with an HTTP
  ``Range`` request; a server that answers 200 instead of 206 is read again from the start.
  A hash mismatch after a resumed download is retried once from scratch; otherwise it is an
  error naming the URL and both hashes, and the cache is left as it was.
* **Progress**: a one-line bar on stderr when stderr is a terminal (``ZOO_PROGRESS=0`` or ``1``
  forces it off or on); silent otherwise.
"""
import contextlib
import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from zoo._progress import Progress
from zoo.errors import WeightsError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock
    fcntl = None

USER_AGENT = "zoo-weights/0.1 (+urllib)"
_CHUNK = 1 << 16
_HASH_LENGTHS = {"sha256": 64, "md5": 32}


class _Retryable(Exception):
    """A failure worth another attempt (network trouble, 5xx, truncated body)."""


def settings():
    """The fetch settings from the environment (read on every call)."""
    env = os.environ

    def number(key, default, kind=float):
        raw = env.get(key, "").strip()
        try:
            return kind(raw) if raw else default
        except ValueError:
            raise WeightsError(f"{key}={raw!r} must be a number; unset it or pass e.g. {key}={default}.") from None

    return {
        "home": Path(env.get("ZOO_HOME") or Path.home() / ".cache" / "zoo").expanduser(),
        "offline": env.get("ZOO_OFFLINE", "").strip().lower() in ("1", "true", "yes"),
        "allow_http": env.get("ZOO_ALLOW_HTTP", "").strip().lower() in ("1", "true", "yes"),
        "mirror": env.get("ZOO_MIRROR", "").strip() or None,
        "retries": number("ZOO_RETRIES", 4, int),
        "timeout": number("ZOO_TIMEOUT", 30.0),
        "backoff": number("ZOO_BACKOFF", 1.0),
        "progress": {"0": False, "1": True}.get(env.get("ZOO_PROGRESS", "").strip()),
    }


def parse_hash(text):
    """``'sha256:<hex>'``/``'md5:<hex>'`` -> ``(algorithm, lowercase hex)``."""
    algo, _, digest = str(text).partition(":")
    digest = digest.strip().lower()
    if algo not in _HASH_LENGTHS or len(digest) != _HASH_LENGTHS[algo] or \
            any(c not in "0123456789abcdef" for c in digest):
        raise WeightsError(f"hash {text!r} must be 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'.")
    return algo, digest


def hash_file(path, algorithms=("sha256",)):
    """``{algorithm: hex}`` of a file, all algorithms in one pass."""
    hashers = {a: hashlib.new(a) for a in dict.fromkeys(algorithms)}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def url_filename(url):
    name = urllib.parse.unquote(Path(urllib.parse.urlsplit(url).path).name)
    if not name or name in (".", ".."):
        raise WeightsError(f"URL {url!r} does not end with a file name; weight URLs must name a file.")
    return name


def apply_mirror(url, mirror):
    """The mirror rule: http(s) URLs become ``<mirror>/<file name>``; others are unchanged."""
    if not mirror or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(url_filename(url))


def check_scheme(url, allow_http):
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "http" and not allow_http:
        raise WeightsError(
            f"refusing plain http URL {url!r}: the download could be altered in transit. Use https, "
            "or set ZOO_ALLOW_HTTP=1 if you trust the network (e.g. a local mirror).")
    if scheme not in ("https", "http", "file"):
        raise WeightsError(f"URL {url!r} has scheme {scheme!r}; weights are fetched over https:// "
                           "or file:// only (or pass a local path).")
    return scheme


def cache_path(url, expected_hash=None, home=None):
    """Where ``url`` (with this expected hash, if any) lives in the cache."""
    home = Path(home) if home else settings()["home"]
    if expected_hash:
        key = parse_hash(expected_hash)[1][:16]
    else:
        key = "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]
    return home / "weights" / key / url_filename(url)


def _sidecar(path):
    return path.with_name(path.name + ".verified")


def _read_record(path):
    try:
        return json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None


def _write_record(path, url, digests):
    st = path.stat()
    record = {"url": url, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "verified_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **digests}
    tmp = _sidecar(path).with_suffix(".verified.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, _sidecar(path))
    except OSError:  # read-only cache: the file is simply hashed again next time
        pass


@contextlib.contextmanager
def _locked(path):
    """Exclusive cross-process lock on ``<path>.lock`` (flock; released if the process dies).

    A read-only cache (a shared, pre-filled ``ZOO_HOME``) cannot hold a lock file: reading
    verified files from it needs none, and any download there fails with a clear error.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_name(path.name + ".lock"), "a+b")
    except OSError:
        yield
        return
    with fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _cached_ok(path, algo, expected, url, offline):
    """True when the cached file matches; deletes (or, offline, rejects) a corrupted one."""
    if not path.is_file():
        return False
    record, st = _read_record(path), path.stat()
    if algo is None:  # no expected hash: trust-on-first-use record
        algo, expected = "sha256", (record or {}).get("sha256")
    if record and expected and record.get(algo) == expected and record.get("size") == st.st_size \
            and record.get("mtime_ns") == st.st_mtime_ns:
        return True
    digests = hash_file(path, {algo, "sha256"})
    if expected is None or digests[algo] == expected:
        _write_record(path, url, digests)
        return True
    message = (f"the cached file {path} is corrupted: {algo} {digests[algo]}, expected {expected} "
               f"(from {url}).")
    if offline:
        raise WeightsError(f"{message} ZOO_OFFLINE=1 forbids downloading it again: delete it and "
                           f"place a good copy at {path}, or unset ZOO_OFFLINE.")
    warnings.warn(f"{message} Deleting it and downloading again.", RuntimeWarning, stacklevel=3)
    path.unlink()
    _sidecar(path).unlink(missing_ok=True)
    return False


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    allow_http = False

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_scheme(newurl, self.allow_http)
        if urllib.parse.urlsplit(newurl).scheme == "file":
            raise WeightsError(f"refusing redirect from {req.full_url} to a local file {newurl}.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(allow_http):
    redirect = _NoDowngrade()
    redirect.allow_http = allow_http
    return urllib.request.build_opener(redirect)


def _transfer(opener, url, part, timeout, progress):
    """One attempt: fetch ``url`` into ``part`` (resuming it). Returns True if it resumed."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416:  # our partial file is not a prefix of the remote one: start over
            part.unlink(missing_ok=True)
            raise _Retryable("HTTP 416 for the resumed range") from None
        if e.code >= 500 or e.code in (408, 429):
            raise _Retryable(f"HTTP {e.code} {e.reason}") from None
        raise WeightsError(f"downloading {url} failed: HTTP {e.code} {e.reason}. Check the URL (and "
                           "ZOO_MIRROR if set).") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise _Retryable(f"{type(reason).__name__}: {reason}") from None
    with resp:
        status = getattr(resp, "status", None) or 200
        resumed = False
        if have and status == 206:
            start = resp.headers.get("Content-Range", "").replace("bytes ", "").split("-")[0]
            resumed = start.strip() == str(have)
            if not resumed:  # not the range we asked for: start over
                part.unlink(missing_ok=True)
                raise _Retryable(f"server answered Content-Range {start!r} to a request from byte {have}")
        elif status == 206:
            raise _Retryable("server answered 206 to a request without Range")
        offset = have if resumed else 0
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = offset + length if length is not None else None
        received = 0
        try:
            with open(part, "ab" if resumed else "wb") as fh:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    fh.write(block)
                    received += len(block)
                    progress(offset + received, total)
                fh.flush()
                os.fsync(fh.fileno())
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(f"{type(e).__name__} after {offset + received} bytes: {e}") from None
    if length is not None and received < length:
        raise _Retryable(f"connection closed after {offset + received} of {total} bytes")
    progress(offset + received, total, final=True)
    return resumed


def fetch(url, *, hash=None, size=None, progress=None, retries=None, timeout=None, backoff=None):
    """Return the local path of ``url``'s content, downloading and verifying it if needed.

    ``hash``: ``'sha256:...'``/``'md5:...'`` (None: trust on first use, sha256 recorded).
    ``size``: expected byte count (optional extra check). Other arguments override the
    ``ZOO_*`` environment settings (see the module docstring).
    """
    s = settings()
    retries = s["retries"] if retries is None else retries
    timeout = s["timeout"] if timeout is None else timeout
    backoff = s["backoff"] if backoff is None else backoff
    progress = s["progress"] if progress is None else progress
    algo, expected = parse_hash(hash) if hash else (None, None)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise WeightsError(f"size={size!r} for {url} must be a byte count (an integer >= 0) or None; fix the "
                           "registry's 'size:' or leave it out.")  # checked before anything is downloaded
    source = apply_mirror(url, s["mirror"])
    scheme = check_scheme(source, s["allow_http"])
    final = cache_path(url, hash, s["home"])
    if scheme == "file" and not Path(urllib.request.url2pathname(urllib.parse.urlsplit(source).path)).is_file():
        raise WeightsError(f"{source} does not exist (no such local file); check the path"
                           + (" and ZOO_MIRROR." if source != url else "."))
    with _locked(final):
        if _cached_ok(final, algo, expected, source, s["offline"]):
            return final
        if s["offline"] and scheme != "file":
            what = f"{algo} {expected}" if expected else "no registered hash"
            raise WeightsError(
                f"ZOO_OFFLINE=1 and {final.name} is not in the cache. Download {source} on a machine "
                f"with network access (expected {what}) and place it at exactly {final} - or unset "
                "ZOO_OFFLINE.")
        part = final.with_name(final.name + ".part")
        bar = Progress(final.name, unit="bytes", enabled=progress)
        opener = _opener(s["allow_http"])
        attempt, fresh_retry_left = 0, True
        while True:
            try:
                resumed = _transfer(opener, source, part, timeout, bar.update)
            except _Retryable as e:
                if attempt >= retries:
                    raise WeightsError(
                        f"downloading {source} failed after {attempt + 1} attempt(s): {e}. Check the "
                        "network (or ZOO_MIRROR), raise ZOO_RETRIES/ZOO_TIMEOUT, or use ZOO_OFFLINE=1 "
                        f"with the file placed at {final}. The partial download is kept in {part} "
                        "and resumed next time.") from None
                time.sleep(min(backoff * 2 ** attempt, 60.0))
                attempt += 1
                continue
            digests = hash_file(part, {algo or "sha256", "sha256"})
            got_size = part.stat().st_size
            bad_hash = expected is not None and digests[algo] != expected
            bad_size = size is not None and got_size != size
            if (bad_hash or bad_size) and resumed and fresh_retry_left:
                part.unlink()  # the resumed prefix may be stale: one full retry
                fresh_retry_left = False
                continue
            if bad_hash or bad_size:
                part.unlink()
                detail = (f"{algo} {digests[algo]} but the registry expects {expected}" if bad_hash
                          else f"{got_size} bytes but the registry expects {size}")
                raise WeightsError(
                    f"hash mismatch for {source}: got {detail}. The file was discarded and the cache "
                    "left as it was. The file on the server (or mirror) differs from the registered "
                    "one: check the URL/ZOO_MIRROR, or update the registry's hash if the file was "
                    "re-published on purpose.")
            os.replace(part, final)
            _write_record(final, source, digests)
            return final
