#!/usr/bin/env python3
"""The plain WebSocket snippet of docs/integrations.md (Python `websockets`, native protocol v1)
against vibevoice-rt: session.configure with a voice alias and timestamps, one context, audio
frames after their 16-byte header, timed words covering the text, context.done.

Usage: websocket_check.py --base-url http://127.0.0.1:PORT --api-key KEY
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import TEXT, Summary, check, check_monotone, check_words_cover, pcm_ms  # noqa: E402


async def speak(base_url: str, key: str) -> str:
    url = base_url.replace("http", "ws", 1) + "/v1/tts/stream?encoding=pcm_s16le&sample_rate=24000"
    audio, words, done = 0, [], None
    async with websockets.connect(url, additional_headers={"Authorization": "Bearer " + key}) as ws:
        await ws.send(json.dumps({"type": "session.configure", "voice": "alloy", "timestamps": True}))
        await ws.send(json.dumps({"type": "text", "context_id": "c1", "text": TEXT}))
        await ws.send(json.dumps({"type": "close", "context_id": "c1"}))
        async for message in ws:
            if isinstance(message, bytes):
                audio += len(message) - 16  # after the frame header
                continue
            event = json.loads(message)
            check(event["type"] != "error", f"error event: {event}")
            if event["type"] == "timestamps":
                words += event["words"]
            if event["type"] == "context.done":
                done = event
                break
    check(done is not None, "no context.done")
    ms = pcm_ms(audio, 24000)
    check(ms > 0, "no audio")
    check_words_cover([w["word"] for w in words], TEXT, "timestamps")
    check_monotone([w["start_ms"] for w in words], "word starts")
    check(words[-1]["end_ms"] <= ms + 1, f"words end after the audio ({ms:.0f} ms)")
    return f"{ms:.0f} ms of audio, {len(words)} timed words"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="not-needed")
    parser.add_argument("--voice", default="alloy", help="unused: the snippet uses alloy")
    args = parser.parse_args()
    print(f"websockets {websockets.__version__} against {args.base_url}")
    summary = Summary("websocket")
    await summary.run("native v1 snippet", speak(args.base_url, args.api_key))
    summary.finish()


if __name__ == "__main__":
    asyncio.run(main())
