#!/usr/bin/env python3
"""Repeated cycles of many concurrent bumped tunnels through bb-egress,
with the proxy's VmRSS / VmHWM read from /proc after each cycle.

Each cycle opens --tunnels connections to the proxy, each one `CONNECT
host:port`, a TLS handshake through the tunnel (trusting the proxy's CA),
holds them all open at once, then sends one GET on each and reads the
answer, then closes them all. After the proxy has had --settle seconds to
drop them, one line is printed:

    cycle  ok  failed  seconds  VmRSS_kB  VmHWM_kB  threads

Used by benches/README.md ("Memory over repeated tunnel cycles") with the
upstream of `bb-loadgen upstream` and the routes of compare/routes.yaml.
Loopback only: the proxy address must be 127.0.0.1.
"""

import argparse
import asyncio
import ssl
import sys
import time


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    kb = lambda k: int(fields[k].split()[0])
    return kb("VmRSS"), kb("VmHWM"), int(fields["Threads"])


async def open_tunnel(args, ctx, gate):
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.proxy_port)
        target = f"{args.host}:{args.port}"
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace"))
        await writer.start_tls(ctx, server_hostname=args.host)
        return reader, writer


async def request(args, reader, writer):
    writer.write(
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        "Authorization: Bearer egress-placeholder\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace"))


async def close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def cycle(args, ctx):
    gate = asyncio.Semaphore(args.opening)
    opened = await asyncio.gather(
        *(open_tunnel(args, ctx, gate) for _ in range(args.tunnels)), return_exceptions=True
    )
    tunnels = [t for t in opened if not isinstance(t, BaseException)]
    errors = [t for t in opened if isinstance(t, BaseException)]
    done = await asyncio.gather(*(request(args, r, w) for r, w in tunnels), return_exceptions=True)
    errors += [d for d in done if isinstance(d, BaseException)]
    await asyncio.gather(*(close(w) for _, w in tunnels))
    return len(opened) - len(errors), errors


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="the proxy's pid, for /proc")
    p.add_argument("--ca", required=True, help="the proxy's CA certificate (PEM)")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True, help="the upstream's port")
    p.add_argument("--path", default="/bench/echo")
    p.add_argument("--tunnels", type=int, default=2000)
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--opening", type=int, default=256, help="tunnels being opened at once")
    p.add_argument("--settle", type=float, default=2.0)
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    rss, hwm, threads = status(args.pid)
    print("cycle\tok\tfailed\tseconds\tVmRSS_kB\tVmHWM_kB\tthreads")
    print(f"0\t-\t-\t-\t{rss}\t{hwm}\t{threads}", flush=True)
    for n in range(1, args.cycles + 1):
        start = time.monotonic()
        ok, errors = await cycle(args, ctx)
        took = time.monotonic() - start
        await asyncio.sleep(args.settle)
        rss, hwm, threads = status(args.pid)
        print(f"{n}\t{ok}\t{len(errors)}\t{took:.1f}\t{rss}\t{hwm}\t{threads}", flush=True)
        if errors:
            print(f"  first error: {errors[0]!r}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
