"""The primary model behind a circuit breaker (pybreaker), with a backup that answers when it is open.

After ``fail_max`` consecutive failures of the primary (an exception, or an output that is not finite or has
the wrong shape) the breaker opens: calls go straight to the backup for ``reset_timeout`` seconds, then one
call probes the primary (half-open); success closes the breaker, failure opens it again. Every answer says
which model gave it, so a forecast served by the backup is labelled as such.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger("tradecast.serving")
STATES = {"closed": 0, "half-open": 1, "open": 2}


class ModelFailure(RuntimeError):
    """The primary returned something that is not a forecast (NaN, inf, wrong shape)."""


class _Listener:
    def __init__(self, guarded: GuardedModel) -> None:
        self.guarded = guarded

    # pybreaker listener protocol
    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None: ...
    def success(self, cb: Any) -> None: ...

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.guarded.failures += 1
        self.guarded.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def state_change(self, cb: Any, old: Any, new: Any) -> None:
        self.guarded.transitions += 1
        log.warning("circuit breaker %s: %s -> %s (%s)", cb.name, getattr(old, "name", old), new.name,
                    self.guarded.last_error)


class GuardedModel:
    """``run(windows) -> (forecast, model that answered)``: the primary while it works, else the backup."""

    def __init__(self, primary: Any, backup: Any, *, fail_max: int = 5, reset_timeout: float = 30.0,
                 name: str = "champion") -> None:
        import pybreaker

        self.primary, self.backup, self.name = primary, backup, name
        self.breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout, name=name,
                                                throw_new_error_on_trip=False)
        self.breaker.add_listener(_Listener(self))
        self.failures = self.transitions = self.fallbacks = 0
        self.last_error = ""
        self._lock = threading.Lock()  # pybreaker's state changes are not atomic across threads

    @property
    def state(self) -> str:
        return self.breaker.current_state

    def _checked(self, windows: np.ndarray, exog: dict) -> np.ndarray:
        out = self.primary.run(windows, **exog)
        if out.shape[:2] != (len(windows), self.primary.h) or not np.isfinite(out).all():
            raise ModelFailure(f"{self.primary.label} returned shape {out.shape} with "
                               f"{int((~np.isfinite(out)).sum())} non-finite values")
        return out

    def run(self, windows: np.ndarray, **exog: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """``exog``: ``hist_exog`` / ``futr_exog`` for models with event features (the naive backup ignores them)."""
        import pybreaker

        try:
            with self._lock:
                return self.breaker.call(self._checked, windows, exog), self.primary
        except (pybreaker.CircuitBreakerError, Exception):  # noqa: BLE001 - any primary failure falls back
            self.fallbacks += 1
            return self.backup.run(windows, **exog), self.backup

    def status(self) -> dict[str, Any]:
        return {"model": self.primary.label, "backup": self.backup.label, "breaker": self.state,
                "failures": self.failures, "fallbacks": self.fallbacks, "last_error": self.last_error,
                "fail_max": self.breaker.fail_max, "reset_timeout_s": self.breaker.reset_timeout}
