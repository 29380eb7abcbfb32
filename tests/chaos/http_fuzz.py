"""A seeded, bounded fuzz of the forecast service's HTTP API: ``cases(rng, n, world)`` yields ``n`` requests over
every endpoint (malformed JSON, wrong types, missing and extra fields, extreme numbers as literals and as
strings, out-of-range timestamps, unicode and long symbols, path traversal, oversized and chunked bodies, deep
nesting, lists over the limit, raw HTTP garbage); ``send`` puts one on the wire and returns the status.

JSON is written by :func:`dump`, which can say what ``json.dumps`` will not: ``NaN`` literals, numbers beyond
float64 (``1e400``), lone surrogates (``"\\ud800"``), duplicate keys (:class:`Pairs`)."""

from __future__ import annotations

import json
import math
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Raw:
    """JSON text written as it is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class Pairs:
    """An object as ``[(key, value), ...]``: keys may repeat."""

    def __init__(self, items: list) -> None:
        self.items = list(items)


def dump(obj: Any) -> str:
    try:  # plain JSON: json.dumps (fast); non-ASCII goes out as UTF-8
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        pass
    if isinstance(obj, Raw):
        return obj.text
    if isinstance(obj, (dict, Pairs)):
        items = obj.items() if isinstance(obj, dict) else obj.items
        return "{" + ",".join(f"{dump(k)}:{dump(v)}" for k, v in items) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dump(v) for v in obj) + "]"
    return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")


@dataclass
class Case:
    kind: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    raw: bytes | None = None  # a whole HTTP request, sent as it is over a socket

    def describe(self) -> str:
        shown = self.raw if self.raw is not None else self.body or b""
        return f"{self.kind}: {self.method} {self.path[:120]} {shown[:160]!r} ({len(shown)} bytes)"


@dataclass
class World:
    """What the fuzz knows of the service: its warm symbols with their last bar, and the model's window."""

    symbols: dict[str, tuple[float, float]]  # symbol -> (last ts, last close)
    input_size: int
    window: list[float]
    keep: frozenset[str] = frozenset()  # no valid bar goes to these (their bars are stale before any change)
    fresh: int = 0  # fuzz-made symbols so far
    bodies: dict[str, bytes] = field(default_factory=dict)  # the big ones, made once

    def body(self, name: str, make: Any) -> bytes:
        if name not in self.bodies:
            self.bodies[name] = dump(make()).encode()
        return self.bodies[name]

    def next_bar(self, rng: random.Random, symbol: str | None = None) -> dict[str, Any]:
        """A valid bar (accepted as sent): the next 5-minute bar of a warm symbol, or the first of a new one."""
        if symbol is None and rng.random() < 0.3:
            self.fresh += 1
            symbol = f"FZ{self.fresh}"
        symbol = symbol or rng.choice(sorted(set(self.symbols) - self.keep))
        ts, close = self.symbols.get(symbol, (1.7e9, 100.0))
        ts, close = ts + 300, close * (1 + rng.uniform(-0.002, 0.002))
        self.symbols[symbol] = (ts, close)
        return {"symbol": symbol, "ts": iso(ts), "open": close, "high": close * 1.001, "low": close * 0.999,
                "close": close, "volume": rng.choice([1.0, 0.0, 12.5])}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


NUMBERS = [0, -0.0, -1, 1e-320, 5e-324, 1e12, 1e12 * (1 + 1e-9), 1e15, 3.5e38, 1e308, float("nan"), float("inf"),
           float("-inf"), Raw("1e400"), Raw("-1e400"), Raw("1" * 400), Raw("1" * 5000), 10**30, Raw("0x10"),
           "1e3", "NaN", "Infinity", "-inf", "", "abc", "1,5", True, None, [], {}, Raw("01"), Raw("1."), Raw(".5"),
           Raw("+1"), Raw("1e"), Raw("-"), 2**63, -(2**63) - 1]
TIMESTAMPS = ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1500-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
              "1970-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "99999-01-01T00:00:00Z",
              "+275760-09-13T00:00:00Z", "-0001-01-01T00:00:00Z", "2023-02-30T00:00:00Z", "2023-03-01T25:00:00Z",
              "2023-03-01T00:00:00+25:00", "2023-03-01T00:00:00-23:59", "2023-03-01T00:00:00.999999999999Z",
              "2023-03-01", "now", "", "yesterday", -1, -1e18, 0, 1, 1e10, 1e11, 1e13, 1e16, 1e20, 1e308, 2**63,
              Raw("1e400"), float("nan"), float("inf"), Raw("-1e400"), "1700000000", "1e9", None, True, [], {},
              "2023-03-01T00:00:00\u00a0Z", "２０２３-03-01T00:00:00Z"]
SYMBOLS = ["", "A" * 33, "A" * 10_000, "ü", "日本", Raw('"\\ud800"'), Raw('"\\udfff\\ud800x"'), "../../etc/passwd",
           "BTC USDT", "BTC\x00USDT", "BTC\nUSDT", "😀", 123, None, ["BTCUSDT"], {"a": 1}, True, "btcusdt", "^", "..",
           "%2e%2e", "a/b", "\u202eTDSUCTB", "Ａ"]
KEYS = ["vwap", "", " ", "symbol ", "SYMBOL", "ü", Raw('"\\ud800"'), Raw('"\\udcff"'), "__proto__", "a" * 5000,
        "\x00"]
PATHS = ["..%2F..%2Fetc%2Fpasswd", "..%2f..%2fetc", "%2e%2e%2f%2e%2e%2f", "%00", "%ff", "%ED%A0%80", "%C0%AF",
         "%F0%9F%98%80", "%E6%97%A5", "NOPE", "BTCUSDT%20", "BTCUSDT%00", "BTC%2FUSDT", "A" * 5000,
         "%25", "~", "BTCUSDT/", "BTCUSDT/..", "..", "%2e", "BTCUSDT?x=%ff", "BTCUSDT#x", ";", "%0d%0aX-A:%20b"]


def _mutate(rng: random.Random, body: dict, fields: dict[str, list]) -> tuple[str, Any]:
    """One change to a valid request body; returns (what, new body)."""
    body = dict(body)
    what = rng.choice(["value", "value", "value", "drop", "extra", "duplicate", "null-all", "swap-types"])
    key = rng.choice(list(fields))
    if what == "value":
        body[key] = rng.choice(fields[key])
        return f"{key}={body[key]!r:.40}", body
    if what == "drop":
        body.pop(key, None)
        return f"no {key}", body
    if what == "extra":
        body[rng.choice(KEYS)] = rng.choice(NUMBERS)
        return "extra field", body
    if what == "duplicate":
        return f"duplicate {key}", Pairs([*body.items(), (key, rng.choice(fields[key]))])
    if what == "null-all":
        return "all null", {k: None for k in body}
    return "types swapped", {k: rng.choice(NUMBERS + SYMBOLS) for k in body}


def _as_text(rng: random.Random, obj: Any) -> tuple[str, bytes]:
    """The JSON text of ``obj``, sometimes broken on the way (truncated, garbage, not UTF-8, a BOM)."""
    text = dump(obj).encode("utf-8", "surrogatepass")
    damage = rng.random()
    if damage < 0.06 and len(text) > 2:
        return "truncated", text[:rng.randrange(1, len(text))]
    if damage < 0.09:
        i = rng.randrange(len(text) + 1)
        return "garbage byte", text[:i] + bytes([rng.choice([0, 0xFF, 0x80, 0x7B, 0x5D, 0x22])]) + text[i:]
    if damage < 0.11:
        return "BOM", b"\xef\xbb\xbf" + text
    if damage < 0.13:
        return "latin-1", dump(obj).encode("latin-1", "replace")
    return "", text


def _json_case(rng: random.Random, kind: str, path: str, obj: Any) -> Case:
    damage, text = _as_text(rng, obj)
    content_type = rng.choices(["application/json", "text/plain", "application/x-www-form-urlencoded", "",
                                "application/json; charset=latin-1", "multipart/form-data; boundary=x"],
                               [20, 1, 1, 1, 1, 1])[0]
    headers = {"content-type": content_type} if content_type else {}
    return Case(f"{kind}{' ' + damage if damage else ''}", "POST", path, text, headers,
                chunked=rng.random() < 0.05)


def _bars(rng: random.Random, world: World) -> Case:
    query = rng.choice(["", "", "?forecast=true", "?forecast=false", "?forecast=maybe", "?forecast=1",
                        "?forecast=true&forecast=%ff", "?forecast=" + "1" * 5000])
    roll = rng.random()
    if roll < 0.25:  # valid, as sent (the service takes them: the state the fuzz is allowed to change)
        obj: Any = (world.next_bar(rng) if rng.random() < 0.7
                    else [world.next_bar(rng) for _ in range(rng.randint(1, 5))])
        return _json_case(rng, "bars valid", "/bars" + query, obj)
    if roll < 0.255:  # one over MAX_BARS: refused whole
        body = world.body("bars 10001", lambda: [{"symbol": "FZBIG", "ts": iso(1.7e9 + 300 * i), "open": 1.0,
                                                  "high": 1.0, "low": 1.0, "close": 1.0} for i in range(10_001)])
        return Case("bars list of 10001", "POST", "/bars" + query, body, {"content-type": "application/json"})
    if roll < 0.285:
        return _json_case(rng, "bars inconsistent", "/bars" + query, {**world.next_bar(rng), "high": 1.0, "low": 2.0})
    fields = {"symbol": SYMBOLS, "ts": TIMESTAMPS, "open": NUMBERS, "high": NUMBERS, "low": NUMBERS,
              "close": NUMBERS, "volume": NUMBERS}
    symbol = rng.choice(sorted(world.symbols))
    ts, close = world.symbols[symbol]
    valid = {"symbol": symbol, "ts": iso(ts + (0 if symbol in world.keep else 300)), "open": close, "high": close,
             "low": close, "close": close, "volume": 1.0}
    what, obj = _mutate(rng, valid, fields)
    if rng.random() < 0.2:
        obj = [obj, *(_mutate(rng, valid, fields)[1] for _ in range(rng.randint(0, 3)))]
    return _json_case(rng, f"bars {what}", "/bars" + query, obj)


def _events(rng: random.Random, world: World) -> Case:
    fields = {"ts": TIMESTAMPS, "headline": ["", "x" * 2001, "ü" * 2000, Raw('"\\ud800 rally"'), "\x00\x01",
                                             "😀" * 500, 1, None, ["a"], "Fed hikes rates"],
              "symbol": SYMBOLS + [rng.choice(sorted(world.symbols)), None], "sentiment": NUMBERS + [-1, 1, 0.5]}
    symbol = rng.choice([None, rng.choice(sorted(world.symbols))])
    valid = {"ts": iso(max(ts for ts, _ in world.symbols.values()) + rng.choice([-86_400, 60, 600])),
             "headline": rng.choice(["Bitcoin rallies", "SEC sues exchange", "😀 moon", "ü" * 300]), "symbol": symbol,
             "sentiment": rng.choice([None, 0.3, -1.0])}
    if rng.random() < 0.1:
        return _json_case(rng, "events valid", "/events", valid)
    what, obj = _mutate(rng, valid, fields)
    return _json_case(rng, f"events {what}", "/events", obj)


def _predict(rng: random.Random, world: World) -> Case:
    n = world.input_size
    value = rng.choice(NUMBERS)
    windows = rng.choice([
        [world.window], [world.window] * rng.randint(2, 64), [[value] * n], [[1e15, -1e15] * (n // 2)],
        [[-1e15] * n], [[1e15 * (1 - 1e-9)] * n], [[0.0] * n], [[1e-45] * n], [world.window[:-1]],
        [world.window + [1.0]], [[]], [], [[1.0] * n] * 1025, [[[1.0]] * n], [[str(v) for v in world.window]],
        [world.window[:rng.randrange(n)] + [value] + world.window[rng.randrange(n) + 1:]][:1], [1.0] * n,
        [[1.0] * 10_000], [world.window] * 1024 if rng.random() < 0.1 else [world.window]])
    obj: Any = {"windows": windows, "arm": rng.choice(["champion"] * 4 + ["challenger", "canary", 1, None, ""])}
    if rng.random() < 0.15:
        _, obj = _mutate(rng, obj, {"windows": NUMBERS + [[[]], [[None]]], "arm": SYMBOLS})
    return _json_case(rng, "predict", "/predict", obj)


def _get(rng: random.Random, world: World) -> Case:
    roll = rng.random()
    if roll < 0.5:
        symbol = rng.choice(sorted(world.symbols)) if rng.random() < 0.3 else rng.choice(PATHS)
        return Case("forecast", "GET", f"/forecast/{symbol}")
    if roll < 0.7:
        path = rng.choice(["/health", "/metrics", "/health?x=%ff", "/metrics?name[]=1", "/docs", "/openapi.json"])
        return Case("read", "GET", path)
    method, path = rng.choice([("POST", "/health"), ("DELETE", "/bars"), ("PUT", "/forecast/BTCUSDT"),
                               ("GET", "/bars"), ("GET", "/predict"), ("PATCH", "/events"), ("GET", "/"),
                               ("GET", "/forecast/"), ("GET", "/forecast"), ("GET", "//forecast//BTCUSDT"),
                               ("OPTIONS", "/bars"), ("HEAD", "/health"), ("GET", "/nope/" + "x" * 3000)])
    return Case("method/path", method, path)


def _raw(rng: random.Random, world: World) -> Case:
    """Requests httpx will not send: bad request lines, lengths, chunking, headers."""
    post = "POST /bars HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    raw = rng.choice([
        b"GET /forecast/\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /forecast/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), b"GARBAGE\r\n\r\n",
        (post + "Content-Length: abc\r\n\r\n{}").encode(), (post + "Content-Length: -1\r\n\r\n{}").encode(),
        (post + "Content-Length: 99999999999999999999999\r\n\r\n{}").encode(),
        (post + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}").encode(),
        (post + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode(),
        (post + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n").encode(),
        (post + "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode(),
        ("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 100_000 + "\r\n\r\n").encode(),
        ("GET /health HTTP/1.1\r\nHost: x\r\n" + "X-A: b\r\n" * 2000 + "\r\n").encode(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: \x00\x01\r\n\r\n", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
        ("GET /forecast/" + "A" * 70_000 + " HTTP/1.1\r\nHost: x\r\n\r\n").encode()])
    if rng.random() < 0.1:  # a body shorter than its Content-Length, then the client closes: nobody to answer
        return Case("raw incomplete", "RAW", "-", raw=(post + 'Content-Length: 100\r\n\r\n{"symbol":').encode())
    return Case("raw http", "RAW", "-", raw=raw)


def _huge(rng: random.Random, world: World) -> Case:
    """A body over the 4 MiB limit (with Content-Length, or chunked), or deep nesting."""
    roll = rng.random()
    if roll < 0.5:
        body = world.body("oversized", lambda: {"windows": [world.window] * 1200})
        path = rng.choice(["/predict", "/bars", "/events"])
        return Case("oversized", "POST", path, body, {"content-type": "application/json"}, chunked=rng.random() < 0.5)
    depth = rng.choice([100, 1_000, 10_000, 200_000])
    path = rng.choice(["/predict", "/bars", "/events"])
    nested = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    body = ('{"windows": ' + nested + "}") if path == "/predict" else nested
    return Case(f"nested {depth}", "POST", path, body.encode(), {"content-type": "application/json"})


KINDS = [(_bars, 34), (_predict, 18), (_get, 20), (_events, 16), (_raw, 6), (_huge, 1)]


def cases(rng: random.Random, n: int, world: World) -> Iterator[Case]:
    makers, weights = zip(*KINDS, strict=True)
    for _ in range(n):
        yield rng.choices(makers, weights)[0](rng, world)


def _chunks(body: bytes, size: int = 65_536) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def send(http: Any, host: str, port: int, case: Case, timeout: float = 30.0) -> tuple[int, str]:
    """``(status, response text)``; status 0 when the server closed the connection without an answer (only raw
    HTTP that no server can parse may get that)."""
    if case.raw is not None:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            try:
                sock.sendall(case.raw)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            data = b""
            try:
                while len(data) < 65_536 and (chunk := sock.recv(65_536)):
                    data += chunk
            except OSError:
                pass
        line = data.split(b"\r\n", 1)[0].split()
        return (int(line[1]) if len(line) > 1 and line[1].isdigit() else 0), data[:2000].decode("latin-1")
    content = _chunks(case.body) if case.chunked and case.body is not None else case.body
    response = http.request(case.method, case.path, content=content, headers=case.headers)
    return response.status_code, response.text
