"""Rate limits for log lines, so no flood of input can flood the log.

    limiter = RateLimiter(burst=20, per_s=1.0)
    ok, suppressed = limiter.allow()      # a token bucket: `burst` in a row, then `per_s` a second
    warn = LimitedLog(log, burst=5)       # warn.warning(...) as log.warning, rate-limited, appending
                                          # "(N similar lines suppressed)" to the next line it lets through
    logger.addFilter(SummaryFilter())     # per message template: a burst, then one line a interval

All are thread-safe (a lock around a few additions) and cost a clock read per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket: `burst` events in a row, then `per_s` a second; counts what it refused."""

    def __init__(self, burst: int = 20, per_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.burst, self.per_s, self.clock = float(burst), float(per_s), clock
        self._tokens, self._t = float(burst), clock()
        self._suppressed = 0
        self.suppressed_total = 0
        self._lock = threading.Lock()

    def allow(self) -> tuple[bool, int]:
        """(allowed, events suppressed since the last allowed one; counted back to 0 when allowed)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.per_s)
            self._t = now
            if self._tokens < 1.0:
                self._suppressed += 1
                self.suppressed_total += 1
                return False, self._suppressed
            self._tokens -= 1.0
            n, self._suppressed = self._suppressed, 0
            return True, n

    def pending(self) -> int:
        """Events suppressed since the last allowed one (not yet told)."""
        return self._suppressed


def suppressed_note(n: int) -> str:
    return f" ({n} similar line{'s' if n != 1 else ''} suppressed)" if n else ""


class LimitedLog:
    """A logger's warning/info/error through one RateLimiter; a line let through after others were
    suppressed says how many."""

    def __init__(self, logger: logging.Logger, burst: int = 5, per_s: float = 0.2):
        self.logger, self.limiter = logger, RateLimiter(burst, per_s)

    def log(self, level: int, msg: str, *args) -> bool:
        ok, n = self.limiter.allow()
        if ok:
            self.logger.log(level, msg + suppressed_note(n).replace("%", "%%"), *args)
        return ok

    def warning(self, msg: str, *args) -> bool:
        return self.log(logging.WARNING, msg, *args)

    def info(self, msg: str, *args) -> bool:
        return self.log(logging.INFO, msg, *args)

    def error(self, msg: str, *args) -> bool:
        return self.log(logging.ERROR, msg, *args)

    def flush(self, level: int = logging.WARNING, what: str = "lines") -> None:
        """Log how many were suppressed since the last line let through (at the end of a run)."""
        n = self.limiter.pending()
        if n:
            self.limiter._suppressed = 0
            self.logger.log(level, "%d more similar %s suppressed", n, what)


class SummaryFilter(logging.Filter):
    """A logging.Filter for a logger whose lines an outsider can cause (the daemon's per-command lines):
    per message template (record.msg), `burst` lines pass, then one every `interval_s`, which carries
    the count of those suppressed meanwhile ("(N similar lines suppressed)"). Lines that come rarely
    are never touched."""

    def __init__(self, burst: int = 10, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.burst, self.interval_s, self.clock = burst, interval_s, clock
        self._limits: dict[tuple[str, int, str], RateLimiter] = {}
        self._lock = threading.Lock()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            limiter = self._limits.get(key)
            if limiter is None:
                if len(self._limits) > 1000:  # templates are few; never grow without bound
                    self._limits.clear()
                limiter = self._limits[key] = RateLimiter(self.burst, 1.0 / self.interval_s, self.clock)
        ok, n = limiter.allow()
        if not ok:
            self.suppressed += 1
            return False
        if n:
            record.msg = str(record.msg) + suppressed_note(n).replace("%", "%%")
        return True

    def pending(self) -> dict[str, int]:
        """Per template, the lines suppressed and not yet told."""
        return {k[2]: lim.pending() for k, lim in self._limits.items() if lim.pending()}
