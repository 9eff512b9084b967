"""The weights subsystem: downloader (against a local HTTP server), cache, checksums, safe loading."""
from __future__ import annotations

import collections
import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vsmsvsr import weights
from vsmsvsr.weights import WeightFile, WeightsError

# A .pdparams file (a pickled state dict) larger than one read chunk: downloads are accepted only
# when they read as weights.
PAYLOAD = pickle.dumps({"w": np.frombuffer(os.urandom(3 * 1024 * 1024 + 123), np.uint8)}, protocol=4)
HTML = b"<!DOCTYPE html><html><body><h1>Proxy login</h1></body></html>\n"
#: Bodies served under /mirror/<path>: set by the tests (e.g. keyed PP-MSVSR weights).
MIRROR_FILES: dict[str, bytes] = {}


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: collections.Counter = collections.Counter()
    stall_seconds = 3.0

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        type(self).hits[self.path] += 1
        if self.path.startswith("/ok/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path.startswith("/html/"):  # a captive portal or proxy error page, with status 200
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(HTML)))
            self.end_headers()
            self.wfile.write(HTML)
        elif self.path.startswith("/cut/"):  # no Content-Length, connection closed half-way
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path.startswith("/mirror/") and self.path[len("/mirror"):] in MIRROR_FILES:
            body = MIRROR_FILES[self.path[len("/mirror"):]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/stall/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            time.sleep(self.stall_seconds)
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _register(monkeypatch, server: str, route: str, name: str = "Test") -> WeightFile:
    entry = WeightFile(name, f"{server}/{route}/test_{route}.pdparams")
    monkeypatch.setitem(weights.OFFICIAL, name, entry)
    return entry


def _leftovers(home: Path) -> list[str]:
    folder = home / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_registry_has_the_seven_official_files():
    assert {n: f.url for n, f in weights.OFFICIAL.items()} == {
        "PP-MSVSR": "https://paddlegan.bj.bcebos.com/models/PP-MSVSR_reds_x4.pdparams",
        "PP-MSVSR-BD": "https://paddlegan.bj.bcebos.com/models/PP-MSVSR_vimeo90k_x4.pdparams",
        "PP-MSVSR-L": "https://paddlegan.bj.bcebos.com/models/PP-MSVSR-L_reds_x4.pdparams",
        "DeOldify": "https://paddlegan.bj.bcebos.com/applications/DeOldify_stable.pdparams",
        "DeOldify-artistic": "https://paddlegan.bj.bcebos.com/applications/DeOldify_art.pdparams",
        "DeepRemaster": "https://paddlegan.bj.bcebos.com/applications/deep_remaster.pdparams",
        "DAIN": "https://paddlegan.bj.bcebos.com/applications/DAIN_weight.tar",
    }


def test_cache_dir_follows_vsmsvsr_home_else_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path / "h"))
    assert weights.cached_path("DAIN") == tmp_path / "h" / "weights" / "DAIN_weight.tar"
    monkeypatch.delenv("VSMSVSR_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert weights.cache_dir() == tmp_path / "xdg" / "vsmsvsr"


def test_download_then_cache_hit_without_second_request(server, home, monkeypatch):
    entry = _register(monkeypatch, server, "ok")
    path = weights.fetch("Test", progress=False)
    assert path == home / "weights" / entry.filename
    assert path.read_bytes() == PAYLOAD
    assert _handler_hits("/ok/test_ok.pdparams") == 1
    record = (home / "weights" / (entry.filename + ".sha256")).read_text()
    assert record.split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    assert weights.fetch("Test", progress=False) == path
    assert _handler_hits("/ok/test_ok.pdparams") == 1
    assert weights.verify("Test") == "ok"
    assert _leftovers(home) == [entry.filename, entry.filename + ".sha256"]


def _handler_hits(path: str) -> int:
    return _Handler.hits[path]


def test_http_404_leaves_nothing(server, home, monkeypatch):
    entry = _register(monkeypatch, server, "missing")
    with pytest.raises(WeightsError, match="HTTP 404") as info:
        weights.fetch("Test", progress=False)
    assert entry.url in str(info.value)
    assert str(home / "weights" / entry.filename) in str(info.value)
    assert _leftovers(home) == []


def test_truncated_body_is_detected_and_leaves_nothing(server, home, monkeypatch):
    _register(monkeypatch, server, "truncated")
    with pytest.raises(WeightsError, match=rf"truncated download .* of {len(PAYLOAD)} bytes"):
        weights.fetch("Test", progress=False)
    assert _leftovers(home) == []


def test_stalled_server_times_out_and_leaves_nothing(server, home, monkeypatch):
    _register(monkeypatch, server, "stall")
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"stalled: no data for 0.5 s"):
        weights.fetch("Test", progress=False, read_timeout=0.5)
    assert time.monotonic() - start < _Handler.stall_seconds
    assert _leftovers(home) == []


@pytest.mark.parametrize("route, why", [("html", "not a .pdparams file"), ("cut", "not a .pdparams file")])
def test_a_body_that_is_not_weights_is_never_cached(server, home, monkeypatch, route, why):
    entry = _register(monkeypatch, server, route)
    with pytest.raises(WeightsError, match=rf"did not give Test's weights, so nothing was cached: .*{why}") as info:
        weights.fetch("Test", progress=False)
    assert entry.url in str(info.value) and "place it at" in str(info.value)
    assert _leftovers(home) == []


@pytest.fixture
def mirror(server, monkeypatch):
    monkeypatch.setenv(weights.MIRROR_ENV, f"{server}/mirror/")
    MIRROR_FILES.clear()
    yield f"{server}/mirror"
    MIRROR_FILES.clear()


def _pdparams(obj) -> bytes:
    import paddle

    buffer = io.BytesIO()
    paddle.save(obj, buffer)
    return buffer.getvalue()


def test_mirror_replaces_the_official_base_url(mirror, home):
    from tests.keyed import model_weights

    entry = weights.OFFICIAL["PP-MSVSR"]
    assert entry.source_url == f"{mirror}/models/PP-MSVSR_reds_x4.pdparams"
    MIRROR_FILES["/models/PP-MSVSR_reds_x4.pdparams"] = _pdparams({"generator": model_weights("msvsr")})
    path = weights.fetch("PP-MSVSR", progress=False)
    assert path == home / "weights" / "PP-MSVSR_reds_x4.pdparams"
    assert weights.verify("PP-MSVSR") == "ok"


@pytest.mark.parametrize("route, message", [
    ("html", r"did not give PP-MSVSR's weights, so nothing was cached: .*not a \.pdparams file"),
    ("cut", r"did not give PP-MSVSR's weights, so nothing was cached"),
    ("stall", r"stalled: no data for 0\.5 s"),
])
def test_bad_mirror_responses_leave_nothing_in_the_cache(server, home, monkeypatch, route, message):
    monkeypatch.setenv(weights.MIRROR_ENV, f"{server}/{route}")  # the official path under the mirror
    with pytest.raises(WeightsError, match=message) as info:
        weights.fetch("PP-MSVSR", progress=False, read_timeout=0.5)
    assert f"{server}/{route}/models/PP-MSVSR_reds_x4.pdparams" in str(info.value)
    assert _leftovers(home) == []


def test_mirror_file_of_another_model_is_refused_and_not_cached(mirror, home):
    from tests.keyed import model_weights

    # PP-MSVSR's weights where PP-MSVSR-L's are expected: a valid .pdparams that does not fit
    MIRROR_FILES["/models/PP-MSVSR-L_reds_x4.pdparams"] = _pdparams({"generator": model_weights("msvsr")})
    with pytest.raises(WeightsError, match=r"PP-MSVSR-L_reds_x4\.pdparams did not give PP-MSVSR-L's weights, "
                                           r"so nothing was cached: .*do not fit this model"):
        weights.fetch("PP-MSVSR-L", progress=False)
    assert _leftovers(home) == []


def test_mirror_html_page_for_a_model_is_refused(mirror, home, server):
    MIRROR_FILES["/applications/DAIN_weight.tar"] = HTML
    with pytest.raises(WeightsError, match=r"did not give DAIN's weights, so nothing was cached"):
        weights.fetch("DAIN", progress=False)
    assert _leftovers(home) == []


def test_poisoned_cache_entry_names_the_command_that_removes_it(home):
    from vsmsvsr.models import load_model

    path = weights.cached_path("PP-MSVSR")
    path.parent.mkdir(parents=True)
    path.write_bytes(HTML)  # cached by an earlier version, or by hand
    with pytest.raises(WeightsError, match=r"python -m vsmsvsr weights remove PP-MSVSR") as info:
        load_model("PP-MSVSR")
    assert str(path) in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "vsmsvsr", "weights", "remove", "PP-MSVSR"],
                          env=dict(os.environ, VSMSVSR_HOME=str(home)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"removed {path}"
    assert not path.exists() and not path.with_name(path.name + ".sha256").exists()


def test_cli_download_reports_a_poisoned_cache_entry(home):
    path = weights.cached_path("DAIN")
    path.parent.mkdir(parents=True)
    path.write_bytes(HTML)
    proc = subprocess.run([sys.executable, "-m", "vsmsvsr", "weights", "download", "DAIN"],
                          env=dict(os.environ, VSMSVSR_HOME=str(home)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "python -m vsmsvsr weights remove DAIN" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_list_shows_the_mirror_url(tmp_path, server):
    env = dict(os.environ, VSMSVSR_HOME=str(tmp_path), VSMSVSR_WEIGHTS_MIRROR="http://127.0.0.1:8080/pg")
    proc = subprocess.run([sys.executable, "-m", "vsmsvsr", "weights", "list"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "http://127.0.0.1:8080/pg/applications/DAIN_weight.tar" in proc.stdout
    assert "bcebos" not in proc.stdout


def test_corrupted_cached_file_fails_verification(server, home, monkeypatch):
    _register(monkeypatch, server, "ok", name="Corrupt")
    path = weights.fetch("Corrupt", progress=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="is corrupt: sha256"):
        weights.verify("Corrupt")
    with pytest.raises(WeightsError, match="is corrupt"):
        weights.fetch("Corrupt", progress=False)


def test_file_placed_by_hand_gets_its_checksum_recorded(home, monkeypatch):
    monkeypatch.setitem(weights.OFFICIAL, "Hand", WeightFile("Hand", "http://127.0.0.1:9/hand.pdparams"))
    path = weights.cached_path("Hand")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"by hand")
    assert weights.status("Hand") == "unverified"
    assert weights.verify("Hand") == "recorded"
    assert weights.status("Hand") == "cached"
    assert weights.verify("Hand") == "ok"
    path.write_bytes(b"changed")
    with pytest.raises(WeightsError, match="corrupt"):
        weights.verify("Hand")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(WeightsError, match="no official weights named 'PP-MSVSR-XL'; valid: PP-MSVSR, "):
        weights.fetch("PP-MSVSR-XL")


def test_offline_error_is_one_clear_line_without_traceback(tmp_path):
    # A closed local port stands in for "no network": the error must come fast and say what to do.
    env = dict(os.environ, VSMSVSR_HOME=str(tmp_path))
    code = (
        "import vsmsvsr.weights as w, sys;"
        "w.OFFICIAL['PP-MSVSR'] = w.WeightFile('PP-MSVSR', 'http://127.0.0.1:9/models/PP-MSVSR_reds_x4.pdparams');"
        "from vsmsvsr.cli import main; sys.exit(main(['weights', 'download', 'PP-MSVSR']))"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    expected_path = tmp_path / "weights" / "PP-MSVSR_reds_x4.pdparams"
    assert "http://127.0.0.1:9/models/PP-MSVSR_reds_x4.pdparams" in proc.stderr
    assert f"place it at {expected_path}" in proc.stderr
    assert not expected_path.exists()


def test_cli_list_shows_seven_files_with_paths_and_status(tmp_path):
    env = dict(os.environ, VSMSVSR_HOME=str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "DAIN_weight.tar").write_bytes(b"x" * 2048)
    proc = subprocess.run([sys.executable, "-m", "vsmsvsr", "weights", "list"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + 7
    table = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(table) == set(weights.OFFICIAL)
    assert table["DAIN"][1:4] == ["unverified", "2.0", "KiB"]
    assert table["PP-MSVSR"][1] == "missing"
    assert str(tmp_path / "weights" / "PP-MSVSR_reds_x4.pdparams") in table["PP-MSVSR"]


# ---------------------------------------------------------------------------------------------
# safe loading


class _CreatesFile:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_that_would_create_a_file_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"weight": np.zeros(3, np.float32), "x": _CreatesFile(str(target))}))
    with pytest.raises(weights.UnsafePickleError, match=r"refusing to load (builtins|_?io)\.open"):
        weights.load_state_dict(evil)
    assert not target.exists()
    # The same bytes really would have created it: the test is not vacuous.
    pickle.loads(evil.read_bytes())
    assert target.exists()


def test_pickle_calling_os_system_is_refused(tmp_path):
    class _System:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"generator": {"w": _System()}}))
    with pytest.raises(weights.UnsafePickleError, match="refusing to load"):
        weights.load_state_dict(evil)


def test_not_a_pickle_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pdparams"
    junk.write_bytes(b"<html>404</html>")
    with pytest.raises(WeightsError, match="is not a .pdparams file written by paddle.save"):
        weights.load_state_dict(junk)


def _assert_same(ours, theirs):
    import paddle

    assert type(ours) is dict or isinstance(ours, collections.OrderedDict)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        if isinstance(value, dict):
            _assert_same(ours[key], value)
        else:
            assert isinstance(value, paddle.Tensor)
            assert isinstance(ours[key], np.ndarray)
            assert ours[key].dtype == value.numpy().dtype
            np.testing.assert_array_equal(ours[key], value.numpy())


@pytest.mark.parametrize("protocol", [2, 4])
def test_both_paddle_save_layouts_read_back_equal_to_paddle_load(tmp_path, protocol):
    import paddle

    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    sd = layer.state_dict()
    plain, nested = tmp_path / "plain.pdparams", tmp_path / "nested.pdparams"
    paddle.save(sd, str(plain), protocol=protocol)
    paddle.save({"modelR": sd, "modelC": {"gamma": paddle.to_tensor([0.5])}}, str(nested), protocol=protocol)

    ours = weights.load_state_dict(plain)
    assert "StructuredToParameterName@@" not in ours
    _assert_same(ours, paddle.load(str(plain)))
    _assert_same(weights.load_state_dict(nested), paddle.load(str(nested)))
    with open(nested, "rb") as f:  # file objects work too
        _assert_same(weights.load_state_dict(io.BytesIO(f.read())), paddle.load(str(nested)))


def test_check_state_dict_lists_first_mismatches():
    expected = {"a": (2, 3), "b": (4,), "c": (1,)}
    weights.check_state_dict(expected, {"a": np.zeros((2, 3)), "b": np.zeros(4), "c": np.zeros(1)}, what="M")
    with pytest.raises(WeightsError, match=r"M: .*1 missing keys: c; 1 unexpected keys: d; "
                                           r"1 wrong shapes: a: file \(3, 2\), model \(2, 3\)"):
        weights.check_state_dict(expected, {"a": np.zeros((3, 2)), "b": np.zeros(4), "d": np.zeros(1)}, what="M")


def test_cli_verify_accepts_only_files_that_fit_the_architecture(tmp_path):
    import paddle

    from vsmsvsr.models import build_model

    env = dict(os.environ, VSMSVSR_HOME=str(tmp_path))
    (tmp_path / "weights").mkdir()
    right = tmp_path / "weights" / "PP-MSVSR_reds_x4.pdparams"
    paddle.save({"generator": build_model("PP-MSVSR").state_dict()}, str(right))
    wrong = tmp_path / "weights" / "PP-MSVSR-L_reds_x4.pdparams"  # PP-MSVSR weights under the L name
    wrong.write_bytes(right.read_bytes())

    def verify(name):
        return subprocess.run([sys.executable, "-m", "vsmsvsr", "weights", "verify", name], env=env,
                              capture_output=True, text=True, timeout=300)

    ok = verify("PP-MSVSR")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "PP-MSVSR: recorded\n"
    bad = verify("PP-MSVSR-L")
    assert bad.returncode == 1
    assert bad.stdout == "PP-MSVSR-L: FAILED\n"
    assert "do not fit this model" in bad.stderr and "wrong shapes" in bad.stderr
    assert "Traceback" not in bad.stderr
