"""A loopback HTTP server for weight-download tests that misbehaves on purpose.

Binds 127.0.0.1 on a free port, in a background thread, and serves in-memory files.
Per-file rules (counted per GET of that file, 1-based):
  fail=n        answer HTTP 500 to the first n requests
  truncate=n    first n requests: announce the full Content-Length, send half, close
  stall=n       first n requests: send half, then sleep ``stall_seconds`` (past the client timeout)
  no_range      ignore Range headers (always 200 with the whole file)
  rate          bytes per second (sent in 16 KiB chunks) - a slow server
  redirect      answer 302 with this Location
Every request is recorded as (path, Range header) in ``server.requests``.
"""
import http.server
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: closing ends the body

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server.owner
        path = self.path.split("?", 1)[0]
        with srv.lock:
            srv.requests.append((path, self.headers.get("Range")))
            n = sum(1 for p, _ in srv.requests if p == path)
        if path not in srv.files:
            self.send_error(404)
            return
        data, rules = srv.files[path], srv.rules[path]
        if rules.get("redirect"):
            self.send_response(302)
            self.send_header("Location", rules["redirect"])
            self.end_headers()
            return
        if n <= rules.get("fail", 0):
            self.send_error(500, "deliberate failure")
            return
        start, rng = 0, self.headers.get("Range")
        if rng and not rules.get("no_range"):
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if not rules.get("no_range"):
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        try:
            if n <= rules.get("truncate", 0):
                self.wfile.write(body[:len(body) // 2])
                return
            if n <= rules.get("stall", 0):
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                time.sleep(rules.get("stall_seconds", 2.0))
                return
            rate = rules.get("rate")
            if rate:
                for i in range(0, len(body), 16384):
                    self.wfile.write(body[i:i + 16384])
                    self.wfile.flush()
                    time.sleep(16384 / rate)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class LoopbackServer:
    def __init__(self):
        self.files, self.rules, self.requests = {}, {}, []
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name, data, **rules):
        self.files["/" + name] = bytes(data)
        self.rules["/" + name] = rules
        return self.url(name)

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def count(self, name):
        return sum(1 for p, _ in self.requests if p == "/" + name)

    def ranges(self, name):
        return [r for p, r in self.requests if p == "/" + name]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
