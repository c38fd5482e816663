#!/usr/bin/env python3
"""Pipecat's own TTS services against vibevoice-rt, driven by Pipecat's test utilities.

Usage: pipecat_check.py --base-url http://127.0.0.1:PORT --api-key KEY --voice NAME

For each of CartesiaTTSService (url=ws://.../tts/websocket), ElevenLabsTTSService
(url=ws://...) and OpenAITTSService (base_url=http://.../v1), through
`pipecat.tests.utils.run_test` (a real Pipeline, PipelineWorker and WorkerRunner):

1. an LLM reply (start, word tokens, end): audio frames at the asked sample rate; the
   TTSTextFrames cover the input words (for Cartesia and ElevenLabs one frame per word, built
   from the server's word timestamps, with monotone presentation times); no ErrorFrame;
2. a long reply interrupted by an InterruptionFrame once its audio has started, then a short
   reply: no audio of the interrupted context leaves the service after the interruption, the
   interrupted context had not finished (mid-utterance), the next reply is spoken, no
   ErrorFrame. On the WebSockets the server's side is measured too: the audio of the
   interrupted context that arrives after the client's cancel (Cartesia: must be within one
   frame, 133 ms) or close_context (ElevenLabs: reported; that message ends a context
   gracefully, see docs/integrations.md).
"""

import asyncio
import json
import sys
import time
from itertools import chain
from pathlib import Path

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import (  # noqa: E402
    AFTER_TEXT,
    FRAME_MS,
    LONG_TEXT,
    TEXT,
    Summary,
    check,
    check_monotone,
    check_words_cover,
    pcm_ms,
    squash,
    server_args,
)

import pipecat  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    ErrorFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.services.cartesia.tts import CartesiaTTSService  # noqa: E402
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService  # noqa: E402
from pipecat.services.openai.tts import OpenAITTSService  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402


class Wire:
    """The JSON messages a WebSocket service sent and received, with their times."""

    def __init__(self):
        self.sent: list[tuple[float, dict]] = []
        self.received: list[tuple[float, dict]] = []

    def attach(self, ws):
        send, recv = ws.send, ws.recv

        async def tapped_send(message, *args, **kwargs):
            self.sent.append((time.monotonic(), json.loads(message)))
            return await send(message, *args, **kwargs)

        async def tapped_recv(*args, **kwargs):
            message = await recv(*args, **kwargs)
            self.received.append((time.monotonic(), json.loads(message)))
            return message

        ws.send, ws.recv = tapped_send, tapped_recv
        return ws


def tapped(service_class):
    """`service_class` with its WebSocket's messages recorded in `self.wire`."""

    class Tapped(service_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.wire = Wire()

        async def _websocket_connect(self, uri, **kwargs):
            return self.wire.attach(await super()._websocket_connect(uri, **kwargs))

    Tapped.__name__ = service_class.__name__
    return Tapped


class Recorder(BaseObserver):
    """Every frame the service pushes, and when the interruption reached it."""

    def __init__(self, tts):
        super().__init__()
        self.tts = tts
        self.out: list[tuple[float, object]] = []
        self.interrupted_at: float | None = None

    async def on_push_frame(self, data: FramePushed):
        if data.source is self.tts:
            self.out.append((time.monotonic(), data.frame))
        elif (
            isinstance(data.frame, InterruptionFrame)
            and data.destination is self.tts
            and self.interrupted_at is None
        ):
            self.interrupted_at = time.monotonic()

    def frames(self, kind, after: float = 0.0):
        return [f for t, f in self.out if isinstance(f, kind) and t >= after]


def until(condition, timeout: float):
    """Sleep frames for run_test until `condition()` holds (or `timeout` passes: the checks
    that follow then fail on what is missing). Lazy: run_test reads it while the pipeline
    runs (frames_to_send is iterated, not indexed)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        yield SleepFrame(sleep=0.05)


def reply(text: str):
    """An LLM reply as Pipecat's LLM services push it: start, word tokens, end."""
    tokens = [w + " " for w in text.split()]
    tokens[-1] = tokens[-1].rstrip()
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(t) for t in tokens), LLMFullResponseEndFrame()]


def no_errors(recorder: Recorder, down, up) -> None:
    errors = [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    errors += recorder.frames(ErrorFrame)
    check(not errors, f"ErrorFrame: {[e.error for e in errors]}")


def check_audio(frames: list[TTSAudioRawFrame], rate: int, what: str) -> float:
    check(frames, f"{what}: no TTSAudioRawFrame")
    bad = {(f.sample_rate, f.num_channels) for f in frames} - {(rate, 1)}
    check(not bad, f"{what}: audio frames at (rate, channels) {bad}, asked ({rate}, 1)")
    total = sum(len(f.audio) for f in frames)
    check(total % 2 == 0, f"{what}: odd PCM byte count {total}")
    return pcm_ms(total, rate)


async def utterance(make, rate: int, timed_words: bool) -> str:
    tts = make()
    rec = Recorder(tts)
    stopped = lambda: rec.frames(TTSStoppedFrame)  # noqa: E731
    frames = chain(reply(TEXT), until(stopped, 120))
    down, up = await run_test(tts, frames_to_send=frames, observers=[rec], start_timeout=10)
    no_errors(rec, down, up)
    check(stopped(), "no TTSStoppedFrame within 120 s")
    audio_ms = check_audio(rec.frames(TTSAudioRawFrame), rate, "reply")
    text_frames = rec.frames(TTSTextFrame)
    texts = [f.text for f in text_frames]
    if timed_words:
        check_words_cover(texts, TEXT, "TTSTextFrames")
        pts = [f.pts for f in text_frames]
        check(all(p is not None for p in pts), f"TTSTextFrames without pts: {pts}")
        check_monotone(pts, "TTSTextFrame pts")
        check(pts[-1] > pts[0], f"all words at one presentation time: {pts}")
        kind = f"{len(texts)} word frames from timestamps"
    else:
        check(squash(" ".join(texts)) == squash(TEXT), f"TTSTextFrames {texts} != {TEXT!r}")
        kind = f"{len(texts)} text frame(s)"
    return f"{audio_ms:.0f} ms of audio at {rate} Hz, {kind}, no ErrorFrame"


def wire_after_cancel(tts, ctx: str, cancel_key: str) -> tuple[float, float, bool]:
    """(time the cancel was sent, audio ms of `ctx` received after it, whether `ctx` had
    finished before it)."""
    sent = [t for t, m in tts.wire.sent if m.get("context_id") == ctx and m.get(cancel_key)]
    check(sent, f"the service sent no {cancel_key} for context {ctx}")
    at = sent[0]
    audio_after, finished = 0, False
    for t, m in tts.wire.received:
        if (m.get("context_id") or m.get("contextId")) != ctx:
            continue
        data = m.get("data") or m.get("audio")
        if data and t >= at:
            audio_after += len(data) * 3 // 4 - data.count("=")
        if t < at and (m.get("type") == "done" or m.get("isFinal")):
            finished = True
    return at, audio_after, finished


async def interruption(make, rate: int, cancel_key: str | None) -> str:
    tts = make()
    rec = Recorder(tts)
    audio = lambda: rec.frames(TTSAudioRawFrame)  # noqa: E731
    first_ctx = lambda: audio()[0].context_id if audio() else None  # noqa: E731
    # Interrupt once two frames have played, then speak the next reply.
    started = lambda: len(audio()) >= 2  # noqa: E731
    after_ctx_done = lambda: any(  # noqa: E731
        first_ctx() and f.context_id != first_ctx() for f in rec.frames(TTSStoppedFrame)
    )
    frames = chain(
        reply(LONG_TEXT),
        until(started, 120),
        [InterruptionFrame(), SleepFrame(sleep=0.5)],
        reply(AFTER_TEXT),
        until(after_ctx_done, 120),
    )
    down, up = await run_test(tts, frames_to_send=frames, observers=[rec], start_timeout=10)
    no_errors(rec, down, up)
    check(rec.interrupted_at is not None, "the InterruptionFrame never reached the service")
    ctx = first_ctx()
    before = [f for f in audio() if f.context_id == ctx]
    # Audio stops within one model frame of the interruption reaching the service (issue 13):
    # a chunk the service's receive task had already taken in may still be pushed while the
    # InterruptionFrame waits its turn (Pipecat's own queueing; seen once in four runs).
    # The unit Pipecat pushes is one model frame for the WebSocket services (at an output rate
    # other than 24 kHz a chunk also carries the resampler's held-back tail of the frame before,
    # under 10 ms: 140 ms chunks at 16 kHz), but its own read chunk (`chunk_size`: 0.5 s) for
    # the HTTP-based OpenAI service, which pushes a whole chunk it has read even when the
    # interruption comes while it waits for the next.
    leaked = [f for f in rec.frames(TTSAudioRawFrame, after=rec.interrupted_at) if f.context_id == ctx]
    leaked_ms = pcm_ms(sum(len(f.audio) for f in leaked), rate)
    unit_ms = FRAME_MS + 10 if cancel_key else max(FRAME_MS, pcm_ms(tts.chunk_size, rate))
    check(
        leaked_ms <= unit_ms + 1,
        f"{leaked_ms:.0f} ms of the interrupted context's audio after the interruption",
    )
    check_audio(before, rate, "interrupted reply")
    check(after_ctx_done(), "the reply after the interruption did not finish")
    after = [f for f in audio() if f.context_id != ctx]
    after_ms = check_audio(after, rate, "reply after the interruption")
    detail = (
        f"{pcm_ms(sum(len(f.audio) for f in before), rate):.0f} ms played, {leaked_ms:.0f} ms "
        f"after the InterruptionFrame, next reply {after_ms:.0f} ms"
    )
    if cancel_key:
        at, after_bytes, finished = wire_after_cancel(tts, ctx, cancel_key)
        check(not finished, "the interrupted context had already finished: not mid-utterance")
        wire_ms = pcm_ms(after_bytes, rate)
        detail += f"; server audio after {cancel_key}: {wire_ms:.0f} ms"
        if cancel_key == "cancel":
            # One frame already on its way, and the resampler's held-back tail (under 10 ms)
            # that ends its segment.
            check(wire_ms <= FRAME_MS + 10, f"the server sent {wire_ms:.0f} ms after the cancel")
    return detail + ", no ErrorFrame"


async def main() -> None:
    args = server_args(__doc__.splitlines()[0])
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    ws_url = args.base_url.replace("http", "ws", 1)
    print(f"pipecat-ai {pipecat.__version__} against {args.base_url}")

    def cartesia():
        return tapped(CartesiaTTSService)(
            api_key=args.api_key,
            url=f"{ws_url}/tts/websocket",
            sample_rate=16000,
            settings=CartesiaTTSService.Settings(voice=args.voice),
        )

    def elevenlabs():
        return tapped(ElevenLabsTTSService)(
            api_key=args.api_key,
            url=ws_url,
            sample_rate=22050,
            settings=ElevenLabsTTSService.Settings(voice=args.voice),
        )

    def openai():
        return OpenAITTSService(
            api_key=args.api_key,
            base_url=f"{args.base_url}/v1",
            sample_rate=24000,
            settings=OpenAITTSService.Settings(voice="marin", speed=1.25),
        )

    summary = Summary("pipecat")
    await summary.run("CartesiaTTSService reply", utterance(cartesia, 16000, True))
    await summary.run("CartesiaTTSService interruption", interruption(cartesia, 16000, "cancel"))
    await summary.run("ElevenLabsTTSService reply", utterance(elevenlabs, 22050, True))
    await summary.run(
        "ElevenLabsTTSService interruption", interruption(elevenlabs, 22050, "close_context")
    )
    await summary.run("OpenAITTSService reply", utterance(openai, 24000, False))
    await summary.run("OpenAITTSService interruption", interruption(openai, 24000, None))
    summary.finish()


if __name__ == "__main__":
    asyncio.run(main())
