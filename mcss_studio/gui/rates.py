"""Rates shown in the status bar (display fps, inference answers per second)."""

from __future__ import annotations

import time
from collections import deque


class RateMeter:
    """Events per second over a sliding window (display fps, inference fps)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self.stamps: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self.stamps.append(now)
        while self.stamps and now - self.stamps[0] >= self.window_s:
            self.stamps.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        while self.stamps and now - self.stamps[0] >= self.window_s:
            self.stamps.popleft()
        return len(self.stamps) / self.window_s
