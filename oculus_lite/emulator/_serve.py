"""``python -m oculus_lite serve``: the emulator in the foreground, for shells and demos.

It prints environment lines for the demo agent first (printing those
credentials is the point: ``eval`` or copy them to configure a shell), the
dashboard's URL and the approver token a person signs in with there (only when
it was generated: with ``--admin-token`` that token is the approver's), then
one log line per request (method, path, status, time; never a secret).
"""

import os
import sys
import threading
from typing import IO, Any, Mapping, Optional, Union

__all__ = ["run_server"]


def run_server(
    host: str = "127.0.0.1",
    port: int = 8400,
    config: Union[None, str, "os.PathLike[str]", Mapping[str, Any]] = None,
    admin_token: Optional[str] = None,
    out: Optional[IO[str]] = None,
    *,
    allow_remote: bool = False,
    ready: Optional[threading.Event] = None,
    stop: Optional[threading.Event] = None,
) -> int:
    """Run an emulator until Ctrl-C (or until ``stop`` is set); returns the exit code 0.

    ``ready`` is set once the environment lines are printed (for tests and
    embedding); ``stop`` ends the loop from another thread.
    """
    from ._emulator import Emulator

    stream = out if out is not None else sys.stdout
    emu = Emulator(
        port=port, host=host, config=config, admin_token=admin_token, log=stream, allow_remote=allow_remote
    )
    emu.start()
    try:
        lines = [
            "ANTI_AI_URL=" + emu.url,
            "AGENT_CLIENT_ID=" + emu.demo_client_id,
            "AGENT_CLIENT_SECRET=" + emu.demo_client_secret,
        ]
        api_key = getattr(emu.otp, "demo_api_key", None) if emu.otp is not None else None
        if api_key:
            lines.append("AGENT_OTP_URL=" + emu.url)
            lines.append("AGENT_OTP_API_KEY=" + str(api_key))
        if emu.otp is not None:
            from ._ui import dashboard_url

            lines.append("EMULATOR_DASHBOARD_URL=" + dashboard_url(emu))
            if emu.otp.approvers.generated:  # else it is the --admin-token the user chose
                lines.append("EMULATOR_APPROVER_TOKEN=" + emu.otp.approver_token)
        stream.write("\n".join(lines) + "\n")
        stream.flush()
        if ready is not None:
            ready.set()
        waiter = stop if stop is not None else threading.Event()
        previous = _on_sigterm(waiter)
        try:
            while not waiter.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                import signal

                signal.signal(signal.SIGTERM, previous)
    finally:
        emu.stop()
    return 0


def _on_sigterm(event: threading.Event) -> Any:
    """Make SIGTERM stop the loop cleanly (main thread only); returns the previous handler."""
    import signal

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
