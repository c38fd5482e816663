#!/usr/bin/env python3
"""LiveKit Agents' Cartesia, ElevenLabs and OpenAI TTS plugins against vibevoice-rt.

Usage: livekit_check.py --base-url http://127.0.0.1:PORT --api-key KEY --voice NAME

Outside a worker (no job context) the plugins take an `http_session` (Cartesia, ElevenLabs)
or build their own client (OpenAI). For each plugin:

- `synthesize(text)` (Cartesia: POST /tts/bytes; ElevenLabs: POST
  /v1/text-to-speech/{voice}/stream; OpenAI: POST /v1/audio/speech): audio frames at the
  plugin's sample rate, mono, some audio;
- `stream()` with the text pushed word by word, then `flush()` and `end_input()` (Cartesia:
  /tts/websocket; ElevenLabs: multi-stream-input; OpenAI: LiveKit's StreamAdapter over
  synthesize): the same, plus the aligned transcript (the TimedStrings LiveKit attaches to the
  frames): Cartesia and ElevenLabs declare `aligned_transcript` and must time every input word,
  in order, with monotone start times inside the audio;
- a wrong key is refused (the plugin raises an APIStatusError 401);
- the ElevenLabs and OpenAI plugins once more with their default format, MP3, which LiveKit
  decodes with its own decoder (PyAV).
"""

import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import (  # noqa: E402
    TEXT,
    Summary,
    check,
    check_monotone,
    check_words_cover,
    squash,
    server_args,
)

from livekit.agents import APIConnectOptions, APIStatusError, tts  # noqa: E402
from livekit.agents import __version__ as agents_version  # noqa: E402
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT  # noqa: E402
from livekit.plugins import cartesia, elevenlabs  # noqa: E402
from livekit.plugins import openai as lk_openai  # noqa: E402

CONN = APIConnectOptions(max_retry=0, timeout=60)


def check_frames(frames, rate: int, what: str) -> float:
    check(frames, f"{what}: no audio frames")
    bad = {(f.sample_rate, f.num_channels) for f in frames} - {(rate, 1)}
    check(not bad, f"{what}: frames at (rate, channels) {bad}, expected ({rate}, 1)")
    seconds = sum(f.samples_per_channel for f in frames) / rate
    check(seconds > 0, f"{what}: no samples")
    return seconds


async def synthesize(plugin, rate: int) -> str:
    frames = [ev.frame async for ev in plugin.synthesize(TEXT, conn_options=CONN)]
    seconds = check_frames(frames, rate, "synthesize")
    return f"{seconds:.2f} s at {rate} Hz"


async def stream(plugin, rate: int, aligned: bool) -> str:
    events = []
    async with plugin.stream(conn_options=CONN) as s:
        for word in TEXT.split(" "):
            s.push_text(word + " ")
        s.flush()
        s.end_input()
        async for ev in s:
            events.append(ev)
    frames = [ev.frame for ev in events]
    seconds = check_frames(frames, rate, "stream")
    timed = [t for f in frames for t in f.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
    if not aligned:
        return f"{seconds:.2f} s at {rate} Hz, {len(timed)} timed strings (not aligned)"
    check(timed, "no aligned transcript (TimedString) on the frames")
    check_words_cover([str(t) for t in timed], TEXT, "aligned transcript")
    starts = [t.start_time for t in timed]
    check_monotone(starts, "aligned transcript start times")
    check(starts[-1] > starts[0], f"every word starts at one time: {starts}")
    end = max(t.end_time for t in timed)
    check(end <= seconds + 0.2, f"words end at {end:.2f} s, after the audio ({seconds:.2f} s)")
    return f"{seconds:.2f} s at {rate} Hz, {len(timed)} timed words ending at {end:.2f} s"


async def refused(plugin) -> str:
    try:
        async for _ in plugin.synthesize(TEXT, conn_options=CONN):
            pass
    except APIStatusError as e:
        check(e.status_code == 401, f"wrong key: status {e.status_code}, expected 401")
        return "401"
    raise AssertionError("a wrong key was accepted")


async def main() -> None:
    args = server_args(__doc__.splitlines()[0])
    base = args.base_url
    print(f"livekit-agents {agents_version} against {base}")
    summary = Summary("livekit")
    async with aiohttp.ClientSession() as http:

        def make_cartesia(key=args.api_key):
            return cartesia.TTS(
                api_key=key, base_url=base, voice=args.voice, sample_rate=16000, http_session=http
            )

        def make_elevenlabs(key=args.api_key, **format):
            return elevenlabs.TTS(
                api_key=key, base_url=f"{base}/v1", voice_id=args.voice, http_session=http,
                **format,
            )

        def make_openai(key=args.api_key, **format):
            return lk_openai.TTS(
                api_key=key, base_url=f"{base}/v1", model="tts-1", voice="cedar", **format
            )

        def pcm_elevenlabs(key=args.api_key):
            return make_elevenlabs(key, encoding="pcm_22050")

        def pcm_openai(key=args.api_key):
            return make_openai(key, response_format="pcm")

        adapter = lambda p: tts.StreamAdapter(tts=p)  # noqa: E731
        # (name, plugin, rate, aligned transcript, streaming wrapper, wrong-key check); the
        # plugins' default formats are MP3 (ElevenLabs mp3_22050_32, OpenAI mp3), which
        # LiveKit decodes with its own decoder (PyAV / FFmpeg).
        plugins = [
            ("cartesia", make_cartesia, 16000, True, lambda p: p, True),
            ("elevenlabs", pcm_elevenlabs, 22050, True, lambda p: p, True),
            ("openai", pcm_openai, 24000, False, adapter, True),
            ("elevenlabs default mp3", make_elevenlabs, 22050, True, lambda p: p, False),
            ("openai default mp3", make_openai, 24000, False, adapter, False),
        ]
        for name, make, rate, aligned, streaming, wrong_key in plugins:
            plugin = make()
            check(plugin.capabilities.aligned_transcript == aligned, f"{name}: capabilities")
            await summary.run(f"{name} synthesize", synthesize(plugin, rate))
            await summary.run(f"{name} stream", stream(streaming(plugin), rate, aligned))
            await plugin.aclose()
            if wrong_key:
                wrong = make("wrong-key")
                await summary.run(f"{name} wrong key", refused(wrong))
                await wrong.aclose()
    summary.finish()


if __name__ == "__main__":
    asyncio.run(main())
