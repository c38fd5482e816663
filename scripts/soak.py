"""Soak test driver for scripts/soak.sh: mixed HTTP, WebSocket v1 and demo /stream traffic with
churn, cancels, disconnects and bad input against a running vibevoice-rt, then a check that the
server returns to its baseline: slots, contexts, sessions and runtime tasks back to their idle
values, open file descriptors back to baseline, the live heap (`vibevoice_process_heap_in_use_bytes`,
glibc's bytes allocated and not freed) within 1% of baseline, resident memory within
--max-rss-growth (it also counts the free memory the allocator keeps resident).

Usage: python soak.py PORT SERVER_PID SECONDS [--workers N] [--report FILE] [--max-rss-growth F]
       [--max-heap-growth F]
"""

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time

import aiohttp

TEXTS = [
    "Hello there.",
    "The quick brown fox jumps over the lazy dog, again and again.",
    "Soak testing keeps the service honest about what it gives back.",
    "One, two, three, four, five. Numbers and words, spoken one after another.",
]


def metrics_value(text, name, default=None):
    """The value of an unlabelled sample `name` in a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    if default is not None:
        return default
    raise KeyError(name)


def rss_parts(pid):
    """Resident memory (bytes), read once from /proc/PID/status: in all (`VmRSS`) and by kind,
    anonymous (`RssAnon`: the heap, stacks: what the process allocated) and file-backed
    (`RssFile`: the binary's code and data pages, faulted in as code paths first run)."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            for key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                if line.startswith(key + ":"):
                    parts[key] = int(line.split()[1]) * 1024
    if "VmRSS" not in parts:
        raise RuntimeError("no VmRSS")
    return parts


def mappings(pid):
    """Resident bytes per mapping, keyed by "start-end name" (/proc/PID/smaps)."""
    found, key = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", head[0]):
                key = head[0] + (" " + head[5] if len(head) > 5 else " [anon]")
            elif head[0] == "Rss:" and key is not None:
                found[key] = int(head[1]) * 1024
    return found


def grown_mappings(before, after, limit=12):
    """The mappings whose resident size changed most between two `mappings` (new ones count
    from 0, gone ones to 0): [[mapping, kib before, kib after], ...], largest change first."""
    keys = set(before) | set(after)
    changed = [[k, before.get(k, 0) // 1024, after.get(k, 0) // 1024] for k in keys
               if before.get(k, 0) != after.get(k, 0)]
    changed.sort(key=lambda row: -abs(row[2] - row[1]))
    return changed[:limit]


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Stats:
    def __init__(self):
        self.counts = {}

    def add(self, kind):
        self.counts[kind] = self.counts.get(kind, 0) + 1


async def http_speech(session, base, stats, rng):
    """A streaming speech request, read to the end or abandoned after the first chunks."""
    body = {"input": rng.choice(TEXTS), "response_format": rng.choice(["pcm", "wav", "mulaw"]),
            "seed": rng.randrange(1000)}
    abandon = rng.random() < 0.4
    async with session.post(f"{base}/v1/audio/speech", json=body) as r:
        if r.status == 503:
            stats.add("http_overloaded")
            return
        assert r.status == 200, f"speech: HTTP {r.status} {await r.text()}"
        got = 0
        async for chunk in r.content.iter_chunked(4096):
            got += len(chunk)
            if abandon and got > 8000:
                stats.add("http_abandoned")
                return
        stats.add("http_done")


async def ws_session(session, base, stats, rng):
    """A v1 session: one to three contexts fed in pieces; each is closed, cancelled or left to
    a disconnect; the session ends with a close frame or an abrupt drop."""
    url = base.replace("http", "ws", 1) + "/v1/tts/stream"
    async with session.ws_connect(url, max_msg_size=1 << 22) as ws:
        ready = await ws.receive_json(timeout=30)
        assert ready["type"] == "session.ready", ready
        ids = [f"c{i}" for i in range(rng.randint(1, 3))]
        endings = {cid: rng.choice(["close", "close", "cancel", "drop"]) for cid in ids}
        for cid in ids:
            text = rng.choice(TEXTS)
            cut = rng.randrange(1, len(text))
            await ws.send_json({"type": "text", "context_id": cid, "text": text[:cut]})
            await ws.send_json({"type": "text", "context_id": cid, "text": text[cut:]})
            if rng.random() < 0.3:
                await ws.send_json({"type": "flush", "context_id": cid})
            if endings[cid] == "close":
                await ws.send_json({"type": "close", "context_id": cid})
        pending = {cid for cid, e in endings.items() if e == "close"}
        cancel_after = rng.randint(1, 4)
        frames = 0
        deadline = time.monotonic() + 60
        drop = "drop" in endings.values()
        while time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=3 if drop else 30)
            except asyncio.TimeoutError:
                if not drop:
                    raise
                msg = None
            if msg is None or (drop and frames >= 2):
                stats.add("ws_dropped")
                return  # leaves a context open: the server must clean up after the drop
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames += 1
                if frames == cancel_after:
                    for cid, e in endings.items():
                        if e == "cancel":
                            await ws.send_json({"type": "cancel", "context_id": cid})
            elif msg.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                if event["type"] == "context.done":
                    pending.discard(event["context_id"])
                elif event["type"] == "error" and event.get("code") == "overloaded":
                    stats.add("ws_overloaded")
                    pending.discard(event.get("context_id"))
                if not pending and not drop:
                    break
            else:
                raise AssertionError(f"session ended early: {msg.type} {msg.data}")
        await ws.close()
        stats.add("ws_done")


async def demo_stream(session, base, stats, rng):
    """The official demo's /stream: read to the end, or disconnect after a few frames."""
    url = base.replace("http", "ws", 1) + "/stream"
    params = {"text": rng.choice(TEXTS), "cfg": "1.5", "steps": "5"}
    leave = rng.random() < 0.5
    async with session.ws_connect(url, params=params, max_msg_size=1 << 22) as ws:
        frames = 0
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames += 1
                if leave and frames >= 2:
                    stats.add("demo_left")
                    return
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
        stats.add("demo_done")


async def bad_input(session, base, stats, rng):
    """Input the service must refuse cleanly."""
    choice = rng.randrange(3)
    if choice == 0:
        async with session.post(f"{base}/v1/audio/speech", data=b"{not json") as r:
            assert r.status == 400, r.status
    elif choice == 1:
        async with session.post(f"{base}/v1/audio/speech", json={"input": ""}) as r:
            assert r.status == 400, r.status
    else:
        url = base.replace("http", "ws", 1) + "/v1/tts/stream"
        async with session.ws_connect(url) as ws:
            await ws.receive_json(timeout=30)
            await ws.send_str("{\"type\": \"nonsense\"}")
            event = await ws.receive_json(timeout=30)
            assert event["type"] == "error", event
    stats.add("bad_input")


async def worker(base, until, stats, seed):
    rng = random.Random(seed)
    actions = [http_speech, http_speech, ws_session, ws_session, demo_stream, bad_input]
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            action = rng.choice(actions)
            try:
                await action(session, base, stats, rng)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                stats.add(f"client_error:{type(e).__name__}")


async def snapshot(base, pid):
    # Descriptors and memory first: counted after the /metrics request, the request's own
    # connection could still be open on the server's side (closed by the client a moment
    # before), one descriptor more than the server holds.
    parts, fds = rss_parts(pid), open_fds(pid)
    rss = parts.pop("VmRSS")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as r:
            text = await r.text()
    return {
        "rss_bytes": rss,
        "rss_parts": parts,
        "open_fds": fds,
        "tasks": metrics_value(text, "vibevoice_runtime_alive_tasks"),
        "slots_used": metrics_value(text, "vibevoice_slots_used"),
        "contexts_active": metrics_value(text, "vibevoice_contexts_active"),
        "ws_sessions_active": metrics_value(text, "vibevoice_ws_sessions_active"),
        # Absent where the allocator cannot tell (not glibc): -1, and the check is skipped.
        "heap_bytes": metrics_value(text, "vibevoice_process_heap_in_use_bytes", -1.0),
    }


# The server returns free heap memory to the system once its engine has been idle for half a
# second (vv_server::memory_release). The baseline and the final snapshot alike are taken after
# this much quiet, so that resident memory measures what the server holds, not free memory the
# allocator has not yet handed back (that varied by up to 10% with the order of the last frees).
QUIET_SECONDS = 2.0


async def settle(base, pid, baseline, seconds=30):
    """Polls until counts are back to the baseline's (or the time is up), then waits
    QUIET_SECONDS with no traffic; the snapshot after that."""
    deadline = time.monotonic() + seconds
    while True:
        snap = await snapshot(base, pid)
        back = all(snap[k] <= baseline[k] for k in
                   ("open_fds", "tasks", "slots_used", "contexts_active", "ws_sessions_active"))
        if back or time.monotonic() > deadline:
            await asyncio.sleep(QUIET_SECONDS)
            return await snapshot(base, pid)
        await asyncio.sleep(0.5)


async def phase(base, seconds, workers, stats, pid=None, trace=None):
    """Runs the clients for `seconds`; with `trace`, samples resident memory and the live
    heap into it once a minute (and at the start), so that a report shows whether growth
    levels off."""
    until = time.monotonic() + seconds
    clients = [worker(base, until, stats, s) for s in range(workers)]
    if trace is not None:
        clients.append(sample_memory(base, pid, until, trace))
    await asyncio.gather(*clients)


async def sample_memory(base, pid, until, trace, every=60.0):
    """Appends [seconds, resident bytes] to trace["rss"] and [seconds, live heap bytes] (-1
    where not exported) to trace["heap"]."""
    started = time.monotonic()
    while True:
        snap = await snapshot(base, pid)
        at = round(time.monotonic() - started)
        trace["rss"].append([at, snap["rss_bytes"]])
        trace["heap"].append([at, snap["heap_bytes"]])
        if time.monotonic() + every > until:
            return
        await asyncio.sleep(every)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("pid", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--report")
    p.add_argument("--max-rss-growth", type=float, default=0.01,
                   help="largest resident-memory growth accepted, as a fraction (default 0.01)")
    p.add_argument("--max-heap-growth", type=float, default=0.01,
                   help="largest live-heap growth accepted, as a fraction (default 0.01)")
    a = p.parse_args()
    base = f"http://127.0.0.1:{a.port}"
    stats = Stats()
    # Warm-up: the same traffic, so pools and caches reach their working size first.
    await phase(base, min(30.0, max(10.0, a.seconds / 2)), a.workers, stats)
    idle = {k: float("inf") for k in ("open_fds", "tasks")} | {
        "slots_used": 0, "contexts_active": 0, "ws_sessions_active": 0}
    baseline = await settle(base, a.pid, idle)
    maps_before = mappings(a.pid)
    started = time.monotonic()
    trace = {"rss": [], "heap": []}
    await phase(base, a.seconds, a.workers, stats, a.pid, trace)
    ran = time.monotonic() - started
    final = await settle(base, a.pid, baseline)
    maps_after = mappings(a.pid)
    growth = (final["rss_bytes"] - baseline["rss_bytes"]) / baseline["rss_bytes"]
    failures = []
    for key in ("slots_used", "contexts_active", "ws_sessions_active"):
        if final[key] != 0:
            failures.append(f"{key} is {final[key]} after the load (expected 0)")
    for key in ("open_fds", "tasks"):
        if final[key] > baseline[key]:
            failures.append(f"{key} grew: {baseline[key]} -> {final[key]}")
    if growth > a.max_rss_growth:
        failures.append(f"resident memory grew {growth:.2%} (limit {a.max_rss_growth:.0%})")
    heap_growth = None
    if baseline["heap_bytes"] > 0:
        heap_growth = (final["heap_bytes"] - baseline["heap_bytes"]) / baseline["heap_bytes"]
        if heap_growth > a.max_heap_growth:
            failures.append(
                f"live heap grew {heap_growth:.2%} (limit {a.max_heap_growth:.0%})")
    report = {"seconds": round(ran, 1), "workers": a.workers, "actions": stats.counts,
              "baseline": baseline, "final": final, "rss_growth": round(growth, 5),
              "heap_growth": None if heap_growth is None else round(heap_growth, 5),
              "rss_growth_by_kind": {k: final["rss_parts"].get(k, 0) - v
                                     for k, v in baseline["rss_parts"].items()},
              "mappings_changed_kib": grown_mappings(maps_before, maps_after),
              "rss_trace_s_bytes": trace["rss"], "heap_trace_s_bytes": trace["heap"],
              "failures": failures}
    text = json.dumps(report, indent=2)
    print(text)
    if a.report:
        with open(a.report, "w") as f:
            f.write(text + "\n")
    total = sum(v for k, v in stats.counts.items() if not k.startswith("client_error"))
    if total == 0:
        failures.append("no request completed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    asyncio.run(main())
