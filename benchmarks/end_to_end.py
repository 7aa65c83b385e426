"""4. End to end: a real `requests.Session` POST to a loopback server, over https (TLS with a
trustme certificate) and over plain http, each contender passed as `auth=`.

Besides each request's latency, every contender's auth step is timed inside the real call
(the same thin wrapper around each). For this library's adapter that tells its share of a real
https request, and the cost of its plain-http path (`allow_http=True`, which plain http needs:
the memoized host decision) beside an https request to the same host.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator

import requests

from ._base import Context, X, fmt_ns, gc_paused, median, perf_ns, progress, rotated
from ._charts import Bar, Group
from ._contenders import ADAPTER, AZID, BODY, COLUMNS, COOKBOOK, FLOOR, PROVIDER, Auth, fake_credential, make

try:
    import trustme
except ImportError:  # the https rows need it
    trustme = None  # type: ignore[assignment]

KINDS = [FLOOR, ADAPTER, PROVIDER, AZID, COOKBOOK]
PATH = "/openai/deployments/gpt-4o/chat/completions"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive answers come ~20 ms late
    answer = b'{"choices":[{"message":{"role":"assistant","content":"ok"}}]}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


@contextlib.contextmanager
def loopback_server(tls: ssl.SSLContext | None) -> Iterator[str]:
    """A server on 127.0.0.1 (port 0); yields its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _StepTimer:
    """Wraps an auth and records how long each call took (ns)."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth
        self.steps: list[int] = []

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        start = perf_ns()
        result = self.auth(r)
        self.steps.append(perf_ns() - start)
        return result  # type: ignore[no-any-return]


def e2e(
    session: requests.Session, url: str, verify: str | bool, auths: dict[str, _StepTimer], n: int
) -> dict[str, list[int]]:
    """`n` rounds of one request per contender (rotating order), each read to the end."""
    post = session.post
    headers = {"Content-Type": "application/json"}
    latency: dict[str, list[int]] = {kind: [] for kind in auths}
    kinds = list(auths)
    with gc_paused():
        for i in range(n):
            for kind in rotated(kinds, i):
                auth = auths[kind]
                start = perf_ns()
                post(url, data=BODY, headers=headers, auth=auth, verify=verify).content  # noqa: B018
                latency[kind].append(perf_ns() - start)
    return latency


def measure(url: str, verify: str | bool, rounds: int, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median request latency and median auth step (ns) per contender."""
    credential = fake_credential()
    plain = url.startswith("http://")  # the adapter sends a token over plain http only when told to
    auths = {kind: _StepTimer(make(kind, credential, allow_http=plain)) for kind in KINDS}
    # One session, one kept-alive connection, the auth passed per request: contenders differ
    # only in their auth. Each has one (the floor's sets a fixed header): with none, requests
    # would look up ~/.netrc on every request. `verify` goes with each call: a session's would
    # lose to REQUESTS_CA_BUNDLE.
    session = requests.Session()
    samples: dict[str, list[int]] = {kind: [] for kind in KINDS}
    try:
        e2e(session, url, verify, auths, 50)  # connect, fill the caches, warm up
        for auth in auths.values():
            auth.steps.clear()
        for _ in range(rounds):
            for kind, values in e2e(session, url, verify, auths, n).items():
                samples[kind].extend(values)
    finally:
        session.close()
    return (
        {kind: median(v) for kind, v in samples.items()},
        {kind: median(auths[kind].steps) for kind in KINDS},
    )


def run(ctx: Context) -> None:
    mode = ctx.mode
    rounds, n = mode.e2e_rounds, mode.e2e_requests
    table = ctx.report.table("main", "Contenders side by side", COLUMNS)
    results: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    if trustme is None:
        progress("trustme is not installed: the https end-to-end row is skipped")
    else:
        progress(f"4a. end to end over https (TLS loopback): {rounds * n:,} rounds of one request per contender")
        ca = trustme.CA()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
        with ca.cert_pem.tempfile() as ca_file, loopback_server(tls) as base:
            results["https"] = measure(base + PATH, ca_file, rounds, n)
    progress(f"4b. end to end over plain http: {rounds * n:,} rounds of one request per contender")
    with loopback_server(None) as base:
        results["http"] = measure(base + PATH, True, rounds, n)

    for scheme, (latency, steps) in results.items():
        share = steps[ADAPTER] / latency[ADAPTER]
        label = "4a. End to end over https (TLS loopback)" if scheme == "https" else "4b. End to end over plain http"
        table.add(
            f"{label}: `requests.Session` POST, median latency",
            {kind: f"{fmt_ns(latency[kind])} ({latency[kind] / latency[FLOOR]:.3f}{X})" for kind in KINDS},
            "adapter within 2% of floor",
            f"{(latency[ADAPTER] / latency[FLOOR] - 1) * 100:+.1f}%",
            latency[ADAPTER] <= 1.02 * latency[FLOOR],
            "the adapter's auth step shows in a whole request",
        )
        table.add(
            f"{label.split(' ', 1)[0]} … the auth step inside that request, median (share of the request)",
            {kind: f"{fmt_ns(steps[kind])} ({steps[kind] / latency[kind] * 100:.2f}%)" for kind in KINDS},
            "adapter < 1% of the request",
            f"{share * 100:.2f}%",
            share < 0.01,
            "",
        )
        if scheme == "https":
            ctx.report.summary.append(
                f"Inside a real https request (`requests`, TLS loopback), the adapter's auth step is "
                f"{share * 100:.2f}% of the request's {fmt_ns(latency[ADAPTER])}."
            )
    if "https" in results:
        https_step, http_step = results["https"][1][ADAPTER], results["http"][1][ADAPTER]
        table.add(
            "4c. The adapter's auth step: plain `http://127.0.0.1` (`allow_http=True`) beside `https://127.0.0.1`",
            {ADAPTER: f"{fmt_ns(http_step)} http; {fmt_ns(https_step)} https"},
            "http costs no more than one request's share (< 1%)",
            f"+{fmt_ns(http_step - https_step)} ({http_step / https_step:.1f}{X})",
            http_step - https_step < 0.01 * results["http"][0][ADAPTER],
            "",
        )
        ctx.report.figures["end_to_end"] = Group(
            "the adapter's share of a real https request (µs)",
            [
                Bar("whole request, floor auth", results["https"][0][FLOOR]),
                Bar("whole request, AzureADTokenAuth", results["https"][0][ADAPTER], ours=True),
                Bar("AzureADTokenAuth's auth step (https)", https_step, ours=True),
                Bar("AzureADTokenAuth's auth step (http loopback)", http_step, ours=True),
            ],
        )
