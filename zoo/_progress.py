"""The one progress line of the zoo: downloads (zoo/hub/_fetch.py) and sliding windows (zoo/inference.py).

Plain stderr, no TensorFlow (a download runs before, and without, any model): one line redrawn
in place with a carriage return, at most every ``interval`` seconds, ended by a newline on the
final update. Shown when asked (``enabled=True``) or, by default, when stderr is a terminal.
"""
import sys
import time


class Progress:
    """``Progress(label, unit="bytes")`` -> ``label: 42.0% 1.2/2.9 MiB 5.1 MiB/s``;
    ``Progress(label, unit="patches")`` -> ``label: 3/8 patches``.
    Call ``update(done, total)`` as work completes and ``update(..., final=True)`` once at the end."""

    def __init__(self, label, *, unit="bytes", enabled=None, interval=0.1):
        self.label, self.unit, self.interval = label, unit, interval
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, done, total=None, *, final=False):
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < self.interval):
            return
        self.last = now
        sys.stderr.write(f"\r{self.label}: {self._text(done, total, now)}" + ("\n" if final else ""))
        sys.stderr.flush()

    def _text(self, done, total, now):
        if self.unit != "bytes":
            return f"{done}/{total} {self.unit}" if total else f"{done} {self.unit}"
        mib = 2 ** 20
        rate = done / max(now - self.start, 1e-6) / mib
        if not total:
            return f"{done / mib:.1f} MiB {rate:.1f} MiB/s"
        return f"{100 * done / total:5.1f}% {done / mib:.1f}/{total / mib:.1f} MiB {rate:.1f} MiB/s"
