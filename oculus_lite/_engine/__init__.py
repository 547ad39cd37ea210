"""The engine: sans-IO flows ("plans"), the sync and async drivers that run them, the one
single-flight primitive, clocks and the background worker."""

from ._clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]
