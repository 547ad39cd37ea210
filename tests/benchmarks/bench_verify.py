"""Verifications per second for one 2048-bit RS256 token, side by side in one run:
oculus_lite without memo, with memo, and PyJWT + cryptography when importable.

    python tests/benchmarks/bench_verify.py [--seconds 0.3] [--rounds 7]

Prints the median of ``rounds`` timed batches per row (rows interleaved, so machine
noise hits all of them alike). Not a test: nothing is asserted.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository: oculus_lite and tests.jwt

from oculus_lite.jwt import JwksVerifier, decode  # noqa: E402
from tests.jwt.jwks_server import JwksServer, claims, jwk, rsa_key, sign  # noqa: E402


def batch_rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second over one batch of about ``seconds``."""
    n = 1
    while True:  # size the batch
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4:
            break
        n *= 2
    n = max(1, int(n * seconds / elapsed))
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one timed batch")
    parser.add_argument("--rounds", type=int, default=7, help="batches per row (median reported)")
    args = parser.parse_args()

    key = rsa_key(2048, 0)
    token = sign(key, claims(ttl=3600), kid="k1")
    rows: Dict[str, Callable[[], object]] = {}
    with JwksServer([jwk(key, "k1")]) as server:
        plain = JwksVerifier(jwks_url=server.url, check_revocation=False, memo=False)
        memo = JwksVerifier(jwks_url=server.url, check_revocation=False, memo=True)
        plain.verify(token)
        memo.verify(token)
        rows["oculus_lite decode() only (no signature)"] = lambda: decode(token)
        rows["oculus_lite verify, no memo"] = lambda: plain.verify(token)
        rows["oculus_lite verify, memo"] = lambda: memo.verify(token)
        try:
            import jwt
            from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
        except ImportError:
            pyjwt_note = "PyJWT + cryptography: not installed (pip install pyjwt cryptography)"
        else:
            public = RSAPublicNumbers(key.e, key.n).public_key()
            rows["PyJWT + cryptography decode"] = lambda: jwt.decode(token, public, algorithms=["RS256"])
            pyjwt_note = "PyJWT {} + cryptography {}".format(
                jwt.__version__, __import__("cryptography").__version__
            )
        rates: Dict[str, List[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, fn in rows.items():
                rates[name].append(batch_rate(fn, args.seconds))
        plain.close()
        memo.close()

    print("CPython {} on {} ({})".format(platform.python_version(), platform.machine(), pyjwt_note))
    print(
        "token: RS256, 2048-bit key, {} bytes; median of {} batches of ~{} s".format(
            len(token), args.rounds, args.seconds
        )
    )
    reference = (
        statistics.median(rates["PyJWT + cryptography decode"])
        if "PyJWT + cryptography decode" in rates
        else None
    )
    print("{:<44} {:>14} {:>10} {:>10}".format("row", "verifications/s", "us/call", "vs PyJWT"))
    for name, values in rates.items():
        med = statistics.median(values)
        ratio = "{:.2f}x".format(med / reference) if reference else "-"
        print("{:<44} {:>14,.0f} {:>10.1f} {:>10}".format(name, med, 1e6 / med, ratio))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
