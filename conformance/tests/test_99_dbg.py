import time
from harness.backend import grip_hold
from harness.client import StreamCollector
def test_dbg(env, backend, prefix, uid, pub):
    ch = "pv-" + uid
    backend.on(prefix, grip_hold("stream", "%s; prev-id=3" % ch, body="initial\n"))
    s = StreamCollector(env.port, prefix)
    time.sleep(1)
    pub.items({"channel": ch, "id": "4", "prev-id": "3", "formats": {"http-stream": {"content": "four\n"}}})
    pub.items({"channel": ch, "id": "5", "prev-id": "4", "formats": {"http-stream": {"content": "five\n"}}})
    pub.items({"channel": ch+"x", "formats": {"http-stream": {"content": "five\n"}}})
    t0=time.monotonic()
    print("ended", s.wait_end(20), time.monotonic()-t0, s.body(), s.error, len(backend.requests(prefix)))
