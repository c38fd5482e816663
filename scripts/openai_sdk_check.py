#!/usr/bin/env python3
"""Check vibevoice-rt's OpenAI-compatible speech API with the official `openai` package, unmodified.

Usage: openai_sdk_check.py [--base-url URL] [--api-key KEY] [--voice NAME]
The base URL defaults to $OPENAI_BASE_URL, else http://127.0.0.1:8000/v1; the key to
$OPENAI_API_KEY, else a placeholder (the server ignores it when no keys are configured).
Exits non-zero with a message on the first failed check.
"""

import argparse
import base64
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import openai
from openai import OpenAI

TEXT = "Hello from the OpenAI SDK check. This sentence is long enough to stream a few frames."


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check_wav(data: bytes, what: str) -> int:
    """Validates a mono 16-bit PCM WAV (streaming or sized header); returns its sample count."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        fail(f"{what}: not a RIFF/WAVE file ({len(data)} bytes, starts {data[:12]!r})")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk_id == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", data, pos + 8)
        if chunk_id == b"data":
            if fmt is None:
                fail(f"{what}: data chunk before fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if (tag, channels, bits) != (1, 1, 16):
                fail(f"{what}: expected PCM mono 16-bit, got tag={tag} channels={channels} bits={bits}")
            if rate != 24000:
                fail(f"{what}: expected 24000 Hz, got {rate}")
            payload = len(data) - (pos + 8)
            if size not in (0xFFFFFFFF, payload):
                fail(f"{what}: data size {size} matches neither the payload ({payload}) nor 0xFFFFFFFF")
            if payload <= 0 or payload % 2:
                fail(f"{what}: bad PCM payload length {payload}")
            return payload // 2
        pos += 8 + size
    fail(f"{what}: no data chunk")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    parser.add_argument("--voice", default="alloy", help="voice name or OpenAI alias (default: alloy)")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=300)
    print(f"openai {openai.__version__} against {args.base_url}")

    ids = [m.id for m in client.models.list().data]
    for wanted in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
        if wanted not in ids:
            fail(f"models.list() lacks {wanted}: {ids}")
    print(f"ok  models.list(): {ids}")

    with tempfile.TemporaryDirectory() as tmp:
        # 1. Whole file, SDK defaults (no response_format: the server's default is wav).
        response = client.audio.speech.create(model="tts-1", voice=args.voice, input=TEXT)
        path = Path(tmp) / "whole.wav"
        response.write_to_file(path)
        samples = check_wav(path.read_bytes(), "speech.create (default format)")
        print(f"ok  speech.create -> write_to_file: {samples} samples of WAV")

        # 2. Streaming response, iterating bytes as they arrive.
        chunks, data = 0, bytearray()
        with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice=args.voice, input=TEXT, response_format="wav"
        ) as streamed:
            if streamed.headers.get("content-type") != "audio/wav":
                fail(f"streamed content-type {streamed.headers.get('content-type')!r}")
            for chunk in streamed.iter_bytes():
                chunks += 1
                data.extend(chunk)
        samples = check_wav(bytes(data), "with_streaming_response (wav)")
        print(f"ok  with_streaming_response.iter_bytes: {chunks} chunks, {samples} samples of WAV")

        # 3. Raw PCM, streamed to a file.
        path = Path(tmp) / "out.pcm"
        with client.audio.speech.with_streaming_response.create(
            model="tts-1-hd", voice=args.voice, input=TEXT, response_format="pcm"
        ) as streamed:
            streamed.stream_to_file(path)
        size = path.stat().st_size
        if size == 0 or size % 2:
            fail(f"pcm: bad length {size}")
        print(f"ok  pcm stream_to_file: {size // 2} samples")

        # 4. Compressed formats: magic bytes.
        # MP3 at 24 kHz is MPEG-2 Layer III: frame sync 0xFFF3 (no CRC).
        for fmt, magic in (("flac", b"fLaC"), ("opus", b"OggS"), ("mp3", b"\xff\xf3")):
            data = client.audio.speech.create(model="tts-1", voice=args.voice, input=TEXT, response_format=fmt).content
            if not data.startswith(magic):
                fail(f"{fmt}: expected magic {magic!r}, got {data[:8]!r}")
            if fmt == "opus" and b"OpusHead" not in data[:200]:
                fail("opus: no OpusHead in the first page")
            print(f"ok  {fmt}: {len(data)} bytes")

    # 5. Server-sent events: base64 deltas, then a done event.
    raw = client.audio.speech.create(
        model="tts-1", voice=args.voice, input=TEXT, response_format="pcm", stream_format="sse"
    ).content
    events = [json.loads(block[len("data: "):]) for block in raw.decode().split("\n\n") if block]
    if not events or events[-1].get("type") != "speech.audio.done":
        fail(f"sse: last event is not speech.audio.done: {events[-1:]}")
    deltas = events[:-1]
    if not deltas or any(e.get("type") != "speech.audio.delta" for e in deltas):
        fail(f"sse: expected speech.audio.delta events, got {[e.get('type') for e in deltas]}")
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    if not pcm or len(pcm) % 2:
        fail(f"sse: bad decoded PCM length {len(pcm)}")
    print(f"ok  stream_format=sse: {len(deltas)} deltas, {len(pcm) // 2} samples")

    # 6. `speed` time-stretches the same seeded audio: 1.5 lasts 1/1.5 as long as 1.0.
    def pcm_samples(**kwargs) -> int:
        data = client.audio.speech.create(
            model="tts-1", input=TEXT, response_format="pcm", extra_body={"seed": 7}, **kwargs
        ).content
        if not data or len(data) % 2:
            fail(f"{kwargs}: bad PCM length {len(data)}")
        return len(data) // 2

    normal = pcm_samples(voice=args.voice, speed=1.0)
    fast = pcm_samples(voice=args.voice, speed=1.5)
    if abs(fast - normal / 1.5) > 1:
        fail(f"speed=1.5: {fast} samples, expected about {normal / 1.5:.0f} (speed 1.0: {normal})")
    print(f"ok  speed=1.5: {fast} samples vs {normal} at speed 1.0")

    # 7. Every voice name the OpenAI API accepts maps to an installed voice.
    for voice in ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                  "shimmer", "verse", "marin", "cedar"):
        data = client.audio.speech.create(model="tts-1", voice=voice, input="Hi.").content
        check_wav(data, f"voice={voice}")
    print("ok  all 13 OpenAI voice names")

    # 8. Errors come back as the SDK's typed exceptions with OpenAI's envelope.
    for kwargs, status, code in (
        (dict(voice="no-such-voice"), 400, "unknown_voice"),
        (dict(voice=args.voice, response_format="aac"), 400, "unsupported_format"),
        (dict(voice=args.voice, speed=5.0), 400, "unsupported_speed"),
    ):
        try:
            client.audio.speech.create(model="tts-1", input=TEXT, **kwargs).content
        except openai.APIStatusError as e:
            if e.status_code != status or e.code != code:
                fail(f"{kwargs}: expected {status} {code}, got {e.status_code} {e.code}: {e.body}")
            print(f"ok  {kwargs} -> {e.status_code} {e.code}")
        else:
            fail(f"{kwargs}: expected an error")

    print("openai SDK check passed")


if __name__ == "__main__":
    main()
