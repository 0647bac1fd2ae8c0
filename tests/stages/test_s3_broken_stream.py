"""An S3 endpoint whose responses break off mid-body: a real HTTP proxy in front of moto's server
sends the headers and half of each object, then closes the connection. botocore retries requests
but not a body that stops streaming, so reads must retry the GET themselves, and an endpoint that
never finishes a body must read as unreachable (exit 3), not as an unexplained crash."""

from __future__ import annotations

import http.client
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from enrich import storage

BUCKET = "broken-stream"


class CuttingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urlparse(upstream)
        self.cuts_left = 0  # GET bodies still to break off; -1 breaks every one
        self.cut = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take_cut(self) -> bool:
        with self.lock:
            if self.cuts_left == 0:
                return False
            self.cuts_left -= 1 if self.cuts_left > 0 else 0
            self.cut += 1
            return True


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        up.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        reply = up.getresponse()
        data = reply.read()
        up.close()
        cut = self.command == "GET" and len(data) > 1 and "list-type" not in self.path and self.server.take_cut()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        size = reply.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", size or str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)
        self.wfile.flush()
        if cut:
            self.close_connection = True

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward


@pytest.fixture
def proxy(s3_endpoint, s3, monkeypatch):
    s3.create_bucket(Bucket=BUCKET)
    server = CuttingProxy(s3_endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    storage.s3_client.cache_clear()  # one client per process: make it again, through the proxy
    yield server
    storage.s3_client.cache_clear()
    server.shutdown()
    server.server_close()


def test_a_body_that_breaks_off_is_read_again_whole(proxy, s3):
    data = os.urandom(200_000)
    s3.put_object(Bucket=BUCKET, Key="whole.bin", Body=data)
    proxy.cuts_left = storage.STREAM_ATTEMPTS - 1
    assert storage.read_bytes(f"s3://{BUCKET}/whole.bin") == data
    assert proxy.cut == storage.STREAM_ATTEMPTS - 1


def test_a_parquet_read_through_ranged_gets_survives_broken_bodies(proxy, s3, tmp_path):
    table = pa.table({"frame_index": list(range(64)), "payload": [os.urandom(4096) for _ in range(64)]})
    pq.write_table(table, tmp_path / "part.parquet", row_group_size=8)
    s3.upload_file(str(tmp_path / "part.parquet"), BUCKET, "part.parquet")
    proxy.cuts_left = 2
    with storage.open_input(f"s3://{BUCKET}/part.parquet") as f:
        read = pq.ParquetFile(f).read_row_group(3)
    assert read.column("frame_index").to_pylist() == list(range(24, 32))
    assert proxy.cut == 2


def test_an_endpoint_that_never_finishes_a_body_reads_as_unreachable(proxy, s3):
    s3.put_object(Bucket=BUCKET, Key="never.bin", Body=os.urandom(50_000))
    proxy.cuts_left = -1
    with pytest.raises(Exception) as failure:
        storage.read_bytes(f"s3://{BUCKET}/never.bin")
    assert proxy.cut == storage.STREAM_ATTEMPTS
    assert storage.unreachable(failure.value) == f"cannot reach {proxy.url}"
