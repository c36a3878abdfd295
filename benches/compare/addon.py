"""mitmproxy addon: the bb-egress policy (SPEC §3), enough of it for the bench.

Loaded by benches/compare-mitmproxy.sh as

    mitmdump -s addon.py --set bb_routes=routes.yaml ...

so that mitmproxy does the same per-request work as bb-egress on the same
routes file: host allowlist and ports, `matches` (paths, methods), outbound
DLP over URL, headers and body (a dozen well-known token formats plus the
exact value of every `token_env` secret and a few of its encodings), git and
DNS-over-HTTPS blocks, Authorization replacement, and the prompt-injection
phrase check on responses. It is not a port of bb-egress: header matchers,
reload on SIGHUP, logging and base64 at every alignment are left out.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import unicodedata
import urllib.parse

from mitmproxy import ctx, http
from ruamel.yaml import YAML

INTROSPECTION_HOST = "_egress.local"

# Well-known credential formats, written from the providers' documented
# token shapes. Each starts with a literal so Python's regex engine can skip
# ahead with its literal-prefix search instead of trying every position.
TOKEN_RULES: list[tuple[str, re.Pattern[bytes]]] = [
    (name, re.compile(rx.encode()))
    for name, rx in [
        ("aws-access-key-id", r"AKIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
        ("aws-session-key-id", r"ASIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
        ("gcp-api-key", r"AIza[0-9A-Za-z_\-]{35}"),
        ("github-token", r"gh[pousr]_[0-9A-Za-z]{36}"),
        ("github-fine-grained-pat", r"github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}"),
        ("gitlab-pat", r"glpat-[0-9A-Za-z_\-]{20,64}"),
        ("slack-token", r"xox[abposr]-[0-9A-Za-z\-]{10,200}"),
        ("anthropic-api-key", r"sk-ant-(?:api|admin)\d{2}-[0-9A-Za-z_\-]{80,120}"),
        ("openai-api-key", r"sk-(?:proj|svcacct|admin)-[0-9A-Za-z_\-]{40,200}"),
        ("stripe-secret-key", r"[sr]k_live_[0-9A-Za-z]{24,99}"),
        ("npm-token", r"npm_[0-9A-Za-z]{36}"),
        ("private-key", r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
        ("jwt", r"eyJ[0-9A-Za-z_\-]{10,}\.eyJ[0-9A-Za-z_\-]{10,}\.[0-9A-Za-z_\-]{10,}"),
    ]
]

# Prompt-injection phrasing, matched on normalised text (NFKC, lower case,
# invisible characters dropped, whitespace runs collapsed to one space).
INJECTION = re.compile(
    "|".join(
        [
            r"(?:ignore|disregard|forget) (?:all |any )?(?:the |your |all the |all of the |all your )?"
            r"(?:previous|prior|above|earlier|preceding|foregoing|system) "
            r"(?:instructions|directions|directives|rules|prompts|guidelines)",
            r"(?:ignore|disregard|forget|override) (?:your|the) system prompt",
            r"(?:reveal|print|show|output|repeat|leak|display|dump) (?:me )?(?:your|the) "
            r"(?:system prompt|initial prompt|hidden instructions|system instructions|system message)",
            r"(?:new|updated|revised) (?:system prompt|instructions):",
            r"(?:begin|end) of system prompt",
            r"you are now (?:dan|in developer mode|jailbroken|unrestricted|an unrestricted ai)",
            r"developer mode enabled|do anything now|jailbreak mode",
            r"<\|im_start\|>(?:system|assistant)|<\|system\|>",
            r"(?:do not|don't|never) (?:tell|inform|alert|notify) the user",
            r"without (?:telling|informing|alerting|notifying) the user|hide this from the user",
            r"(?:send|post|upload|exfiltrate|forward|email) (?:all )?(?:your |the )?"
            r"(?:api keys?|credentials|secrets|access tokens|environment variables|env vars|"
            r"ssh keys|private keys|\.env file|passwords) to",
        ]
    )
)
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
WHITESPACE = re.compile(r"\s+")

OUTBOUND = ("token_patterns", "known_secrets")
INBOUND = ("naive_injection_detection",)


class Route:
    # A plain class, not a dataclass: mitmproxy loads scripts outside
    # sys.modules, which dataclasses cannot resolve annotations against.
    def __init__(self, host: str, raw: dict) -> None:
        self.host = host
        self.raw = raw
        self.ports: tuple[int, ...] | None = None
        self.auth: str | None = None  # the full Authorization value to inject
        self.matches: list[tuple[list[tuple[str, str]], set[str]]] | None = None
        self.git_fetch = False
        self.outbound: tuple[str, ...] = OUTBOUND
        self.inbound: tuple[str, ...] = INBOUND


def detectors(value, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if value is False:
        return ()
    return tuple(value)


def load_routes(path: str) -> tuple[dict[str, Route], dict[str, list[bytes]]]:
    """Parses routes.yaml; returns the routes by host and each secret's encodings."""
    with open(path, encoding="utf-8") as f:
        doc = YAML(typ="safe").load(f) or {}
    routes: dict[str, Route] = {}
    secrets: dict[str, list[bytes]] = {}
    for i, r in enumerate(doc.get("routes") or []):
        host = str(r["host"]).lower()
        if host in routes:
            raise ValueError(f"{path}: routes[{i}] ({host}): duplicate host")
        route = Route(host=host, raw=r)
        if "ports" in r:
            route.ports = tuple(int(p) for p in r["ports"])
        if "token_env" in r:
            value = os.environ.get(r["token_env"])
            if not value:
                raise ValueError(f"{path}: routes[{i}] ({host}): {r['token_env']} is not set")
            route.auth = f"{r.get('auth_scheme', 'Bearer')} {value}"
            secrets[r["token_env"]] = encodings(value.encode())
        if "matches" in r:
            route.matches = [
                (
                    [(p.get("type", "prefix"), p["value"]) for p in m.get("paths") or []],
                    {x.upper() for x in m.get("methods") or []},
                )
                for m in r["matches"]
            ]
        route.git_fetch = bool((r.get("git") or {}).get("fetch", False))
        dlp = r.get("dlp") or {}
        route.outbound = detectors(dlp.get("outbound_detectors"), OUTBOUND)
        route.inbound = detectors(dlp.get("inbound_detectors"), INBOUND)
        routes[host] = route
    return routes, secrets


def encodings(secret: bytes) -> list[bytes]:
    b64 = base64.b64encode(secret).rstrip(b"=")
    return [
        secret,
        b64,
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        binascii.hexlify(secret),
        urllib.parse.quote(secret, safe="").encode(),
    ]


def block(reason: str) -> http.Response:
    return http.Response.make(
        403,
        f"bb-egress (mitmproxy bench addon) blocked this request: {reason}\n",
        {"content-type": "text/plain; charset=utf-8"},
    )


def normalise(data: bytes) -> str:
    text = unicodedata.normalize("NFKC", data.decode("utf-8", "replace")).lower()
    return WHITESPACE.sub(" ", INVISIBLE.sub("", text))


class BottleEgress:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.secrets: dict[str, list[bytes]] = {}

    def load(self, loader) -> None:
        loader.add_option("bb_routes", str, "", "routes.yaml to enforce")

    def configure(self, updated) -> None:
        if "bb_routes" in updated and ctx.options.bb_routes:
            self.routes, self.secrets = load_routes(ctx.options.bb_routes)

    def route_for(self, host: str, port: int) -> tuple[Route | None, str | None]:
        route = self.routes.get(host.lower())
        if route is None:
            return None, f"host {host} is not in the allowlist"
        allowed = route.ports if route.ports is not None else (443, 80)
        if port not in allowed:
            return None, f"port {port} is not allowed for {host}"
        return route, None

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.request.host == INTROSPECTION_HOST:
            return
        _, reason = self.route_for(flow.request.host, flow.request.port)
        if reason:
            flow.response = block(reason)

    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        host = req.pretty_host
        if host == INTROSPECTION_HOST:
            if req.path == "/allowlist":
                body = json.dumps({"routes": [r.raw for r in self.routes.values()]})
                flow.response = http.Response.make(200, body, {"content-type": "application/json"})
            else:
                flow.response = block("unknown introspection path")
            return
        route, reason = self.route_for(host, req.port)
        if route is None:
            flow.response = block(reason or "no route")
            return
        path = req.path.split("?", 1)[0]
        if route.matches is not None and not any(
            (not methods or req.method.upper() in methods)
            and (not paths or any(path_ok(t, v, path) for t, v in paths))
            for paths, methods in route.matches
        ):
            flow.response = block(f"{req.method} {path} matches no entry of the route for {host}")
            return
        if route.outbound:
            hit = self.outbound(req, route)
            if hit:
                flow.response = block(f"outbound DLP: {hit}")
                return
        if "git-receive-pack" in req.path:
            flow.response = block("git push over HTTPS is never allowed")
            return
        if "git-upload-pack" in req.path and not route.git_fetch:
            flow.response = block(f"git fetch is not enabled for {host}")
            return
        ctype = req.headers.get("content-type", "") + req.headers.get("accept", "")
        if "application/dns-message" in ctype or path.startswith("/dns-query"):
            flow.response = block("DNS over HTTPS is not allowed")
            return
        req.headers.pop("authorization", None)
        if route.auth:
            req.headers["authorization"] = route.auth

    def outbound(self, req: http.Request, route: Route) -> str | None:
        parts = [req.host.encode(), req.path.encode()]
        for name, value in req.headers.fields:
            if route.auth and name.lower() == b"authorization":
                continue  # a placeholder the proxy replaces
            parts.append(name + b": " + value)
        parts.append(req.raw_content or b"")
        for part in parts:
            if "token_patterns" in route.outbound:
                for name, rx in TOKEN_RULES:
                    if rx.search(part):
                        return f"token_patterns/{name}"
            if "known_secrets" in route.outbound:
                for env, encoded in self.secrets.items():
                    if any(e in part for e in encoded):
                        return f"known_secrets/{env}"
        return None

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is None or flow.request.pretty_host == INTROSPECTION_HOST:
            return
        route = self.routes.get(flow.request.pretty_host.lower())
        if route is None or "naive_injection_detection" not in route.inbound:
            return
        resp = flow.response
        texts = [b"%s: %s" % (k, v) for k, v in resp.headers.fields]
        texts.append(resp.raw_content or b"")
        for t in texts:
            if INJECTION.search(normalise(t)):
                flow.response = block("inbound DLP: naive_injection_detection")
                return


def path_ok(kind: str, value: str, path: str) -> bool:
    if kind == "exact":
        return path == value
    if kind == "regex":
        return re.search(value, path) is not None
    return path.startswith(value)


addons = [BottleEgress()]
