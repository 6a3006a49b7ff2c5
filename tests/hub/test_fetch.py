"""zoo.hub._fetch against a loopback HTTP server that misbehaves on purpose (no internet)."""
import hashlib
import os
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _proc import ROOT, start_python

from zoo.errors import WeightsError
from zoo.hub import _fetch


def payload(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(http_env, monkeypatch):
    """The shared loopback environment with a short timeout (the stall tests wait for it)."""
    monkeypatch.setenv("ZOO_TIMEOUT", "2")
    return http_env


def cache_files(path):
    return sorted(p.name for p in Path(path).parent.iterdir())


def test_download_verify_cache_layout_and_reuse(server, env):
    data = payload(300_000)
    url = server.add("w.h5", data)
    path = _fetch.fetch(url, hash=sha(data))
    assert path == env / "weights" / hashlib.sha256(data).hexdigest()[:16] / "w.h5"
    assert path.read_bytes() == data
    assert cache_files(path) == ["w.h5", "w.h5.lock", "w.h5.verified"]
    assert _fetch.fetch(url, hash=sha(data)) == path
    assert server.count("w.h5") == 1  # served from the cache the second time


def test_md5_hash_as_keras_pins_it(server, env):
    data = payload(1000)
    url = server.add("k.h5", data)
    path = _fetch.fetch(url, hash="md5:" + hashlib.md5(data).hexdigest())
    assert path.read_bytes() == data


def test_plain_http_refused_without_opt_in(server, env, monkeypatch):
    monkeypatch.delenv("ZOO_ALLOW_HTTP")
    data = payload(100)
    url = server.add("w.h5", data)
    with pytest.raises(WeightsError, match="ZOO_ALLOW_HTTP=1"):
        _fetch.fetch(url, hash=sha(data))
    with pytest.raises(WeightsError, match="https:// or file://"):
        _fetch.fetch("ftp://127.0.0.1/w.h5", hash=sha(data))
    assert server.count("w.h5") == 0


def test_wrong_hash_names_url_and_both_hashes_and_leaves_cache_empty(server, env):
    data = payload(50_000)
    url = server.add("w.h5", data)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(WeightsError) as err:
        _fetch.fetch(url, hash=wrong)
    msg = str(err.value)
    assert url in msg and "0" * 64 in msg and hashlib.sha256(data).hexdigest() in msg
    target = _fetch.cache_path(url, wrong)
    assert not target.exists() and not target.with_name("w.h5.part").exists()
    assert cache_files(target) == ["w.h5.lock"]


def test_5xx_is_retried_then_succeeds(server, env):
    data = payload(10_000)
    url = server.add("w.h5", data, fail=2)
    assert _fetch.fetch(url, hash=sha(data)).read_bytes() == data
    assert server.count("w.h5") == 3


def test_persistent_5xx_gives_clear_error_after_retries(server, env):
    data = payload(10_000)
    url = server.add("w.h5", data, fail=100)
    with pytest.raises(WeightsError, match=r"failed after 3 attempt\(s\): HTTP 500"):
        _fetch.fetch(url, hash=sha(data), retries=2)
    assert server.count("w.h5") == 3


def test_404_is_not_retried(server, env):
    with pytest.raises(WeightsError, match="HTTP 404"):
        _fetch.fetch(server.url("missing.h5"), hash=sha(b"x"))
    assert server.count("missing.h5") == 1


def test_connection_refused_is_retried_then_a_clear_error(env):
    import socket
    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(WeightsError, match=r"failed after 3 attempt\(s\): ConnectionRefusedError"):
        _fetch.fetch(f"http://127.0.0.1:{port}/w.h5", hash=sha(b"x"), retries=2)


def test_stale_partial_file_longer_than_the_remote_one_is_discarded(server, env):
    data = payload(10_000)
    url = server.add("w.h5", data)
    part = _fetch.cache_path(url, sha(data)).with_name("w.h5.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 20_000)  # left over by an older, bigger version of the file
    assert _fetch.fetch(url, hash=sha(data)).read_bytes() == data
    assert server.ranges("w.h5") == ["bytes=20000-", None]  # 416, then a full download


def test_resumed_prefix_from_another_file_is_retried_from_scratch(server, env):
    data = payload(10_000)
    url = server.add("w.h5", data)
    part = _fetch.cache_path(url, sha(data)).with_name("w.h5.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"y" * 4000)  # wrong bytes: the resumed file fails the hash once
    assert _fetch.fetch(url, hash=sha(data)).read_bytes() == data
    assert server.ranges("w.h5") == ["bytes=4000-", None]


def test_truncated_body_is_resumed_with_range(server, env):
    data = payload(200_000)
    url = server.add("w.h5", data, truncate=1)
    assert _fetch.fetch(url, hash=sha(data)).read_bytes() == data
    assert server.ranges("w.h5") == [None, f"bytes={len(data) // 2}-"]


def test_server_without_range_support_falls_back_to_full_download(server, env):
    data = payload(200_000)
    url = server.add("w.h5", data, truncate=1, no_range=True)
    assert _fetch.fetch(url, hash=sha(data)).read_bytes() == data
    assert server.ranges("w.h5") == [None, f"bytes={len(data) // 2}-"]  # asked, got 200, restarted


def test_stall_past_timeout_is_retried(server, env):
    data = payload(100_000)
    url = server.add("w.h5", data, stall=1, stall_seconds=6)
    start = time.monotonic()
    assert _fetch.fetch(url, hash=sha(data), timeout=0.5).read_bytes() == data
    assert time.monotonic() - start < 5  # gave up on the stalled attempt instead of waiting it out
    assert server.count("w.h5") == 2


def test_stall_every_time_gives_clear_timeout_error(server, env):
    data = payload(100_000)
    url = server.add("w.h5", data, stall=100, stall_seconds=3)
    with pytest.raises(WeightsError, match=r"failed after 2 attempt\(s\): .*timed out") as err:
        _fetch.fetch(url, hash=sha(data), timeout=0.3, retries=1)
    assert "ZOO_TIMEOUT" in str(err.value)
    assert not _fetch.cache_path(url, sha(data)).exists()


def test_redirect_to_other_scheme_refused(server, env):
    url = server.add("r.h5", b"", redirect="ftp://127.0.0.1/x.h5")
    with pytest.raises(WeightsError, match="scheme 'ftp'"):
        _fetch.fetch(url, hash=sha(b"x"))


def _fetch_script(url, digest):
    return textwrap.dedent(f"""
        import hashlib, sys, time
        from zoo.hub._fetch import fetch
        print(time.time(), file=sys.stderr)
        p = fetch({url!r}, hash={digest!r})
        print(p, hashlib.sha256(p.read_bytes()).hexdigest())
    """)


def _subprocess_env(home):
    return dict(ZOO_HOME=home, ZOO_ALLOW_HTTP="1", ZOO_BACKOFF="0.01", ZOO_TIMEOUT="10", ZOO_MIRROR=None,
                ZOO_OFFLINE=None)


def test_sigkill_mid_download_then_next_run_resumes_and_cache_holds_only_verified_files(server, env):
    data = payload(2_000_000, seed=1)
    url = server.add("big.h5", data, rate=400_000)
    part = _fetch.cache_path(url, sha(data)).with_name("big.h5.part")
    proc = start_python(_fetch_script(url, sha(data)), env=_subprocess_env(env), cwd=ROOT, stdout=None, stderr=None)
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size >= 200_000):
        assert time.monotonic() < deadline and proc.poll() is None, "download did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    final = part.with_name("big.h5")
    assert not final.exists()  # nothing a later call would trust
    have = part.stat().st_size
    assert 0 < have < len(data)
    server.rules["/big.h5"].pop("rate")
    path = _fetch.fetch(url, hash=sha(data))
    assert path.read_bytes() == data
    assert server.ranges("big.h5")[-1] == f"bytes={have}-"
    assert cache_files(path) == ["big.h5", "big.h5.lock", "big.h5.verified"]


def test_eight_processes_download_once_and_agree(server, env):
    data = payload(1_000_000, seed=2)
    url = server.add("shared.h5", data, rate=500_000)
    procs = [start_python(_fetch_script(url, sha(data)), env=_subprocess_env(env), cwd=ROOT) for _ in range(8)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-500:] for _, err in results]
    lines = {out.strip() for out, _ in results}
    assert lines == {f"{_fetch.cache_path(url, sha(data))} {hashlib.sha256(data).hexdigest()}"}
    assert server.count("shared.h5") == 1
    # they really overlapped: several started fetching before the one download had finished
    finished = _fetch.cache_path(url, sha(data)).stat().st_mtime
    started = [float(next(line for line in err.splitlines() if line.replace(".", "").isdigit()))
               for _, err in results]
    assert sum(t < finished for t in started) >= 2, (started, finished)


def test_offline_without_cached_file_names_file_url_and_exact_path(server, env, monkeypatch):
    data = payload(1000)
    url = server.add("w.h5", data)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    target = _fetch.cache_path(url, sha(data))
    with pytest.raises(WeightsError) as err:
        _fetch.fetch(url, hash=sha(data))
    msg = str(err.value)
    assert "w.h5" in msg and url in msg and str(target) in msg
    assert server.count("w.h5") == 0
    target.write_bytes(data)  # placed by hand where the message said
    assert _fetch.fetch(url, hash=sha(data)) == target
    assert server.count("w.h5") == 0


def test_offline_with_cached_file_never_touches_network(server, env, monkeypatch):
    data = payload(1000)
    url = server.add("w.h5", data)
    path = _fetch.fetch(url, hash=sha(data))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    server.close()
    assert _fetch.fetch(url, hash=sha(data)) == path


def test_corrupted_cache_is_redownloaded_online_and_an_error_offline(server, env, monkeypatch):
    data = payload(5000)
    url = server.add("w.h5", data)
    path = _fetch.fetch(url, hash=sha(data))
    path.write_bytes(b"\0" * len(data))  # same size, new mtime
    with pytest.warns(RuntimeWarning, match="corrupted"):
        assert _fetch.fetch(url, hash=sha(data)).read_bytes() == data
    assert server.count("w.h5") == 2
    path.write_bytes(b"\1" * len(data))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsError, match="corrupted") as err:
        _fetch.fetch(url, hash=sha(data))
    assert hashlib.sha256(data).hexdigest() in str(err.value)


def test_cached_file_rehashed_only_when_size_or_mtime_changed(server, env, monkeypatch):
    data = payload(5000)
    url = server.add("w.h5", data)
    path = _fetch.fetch(url, hash=sha(data))
    calls = []
    real = _fetch.hash_file
    monkeypatch.setattr(_fetch, "hash_file", lambda *a, **k: calls.append(a) or real(*a, **k))
    _fetch.fetch(url, hash=sha(data))
    assert calls == []
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _fetch.fetch(url, hash=sha(data))
    assert len(calls) == 1 and server.count("w.h5") == 1


def test_mirror_rule(server, env, monkeypatch):
    assert _fetch.apply_mirror("https://storage.googleapis.com/a/b/r50.h5?x=1#f", "https://m.lan/zoo/") \
        == "https://m.lan/zoo/r50.h5"
    assert _fetch.apply_mirror("file:///data/r50.h5", "https://m.lan") == "file:///data/r50.h5"
    data = payload(3000)
    server.add("mirror/r50.h5", data)
    monkeypatch.setenv("ZOO_MIRROR", server.url("mirror"))
    registry_url = "https://weights.invalid/some/dir/r50.h5"  # never contacted
    assert _fetch.fetch(registry_url, hash=sha(data)).read_bytes() == data
    assert server.count("mirror/r50.h5") == 1


def test_file_mirror_and_file_urls(tmp_path, env, monkeypatch):
    data = payload(3000)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "r50.h5").write_bytes(data)
    monkeypatch.setenv("ZOO_MIRROR", (tmp_path / "mirror").as_uri())
    monkeypatch.setenv("ZOO_OFFLINE", "1")  # file:// is not the network
    assert _fetch.fetch("https://weights.invalid/x/r50.h5", hash=sha(data)).read_bytes() == data
    with pytest.raises(WeightsError, match="does not exist"):
        _fetch.fetch((tmp_path / "nope.h5").as_uri(), hash=sha(data))


def test_unhashed_url_trusts_first_download_then_verifies(server, env):
    data = payload(3000)
    url = server.add("free.h5", data)
    path = _fetch.fetch(url)
    assert path.parent.name.startswith("url-")
    assert hashlib.sha256(data).hexdigest() in (path.parent / "free.h5.verified").read_text()
    path.write_bytes(b"x" * len(data))
    with pytest.warns(RuntimeWarning, match="corrupted"):
        assert _fetch.fetch(url).read_bytes() == data


def test_progress_bar_only_when_asked_or_on_a_terminal(server, env, capfd):
    data = payload(200_000)
    url = server.add("w.h5", data)
    _fetch.fetch(url, hash=sha(data))  # stderr is not a terminal under pytest: silent
    assert capfd.readouterr().err == ""
    url2 = server.add("w2.h5", data)
    _fetch.fetch(url2, hash="md5:" + hashlib.md5(data).hexdigest(), progress=True)
    err = capfd.readouterr().err
    assert "w2.h5" in err and "100.0%" in err
