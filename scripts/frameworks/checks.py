"""What the framework checks share: the texts, failing with a message, the per-service summary,
and the assertions on audio and timed words that every service's results must pass.

Frame sizes: the server sends audio in frames of 1/7.5 s (133.3 ms, the model's frame rate),
whatever the output rate.
"""

import argparse
import re
import sys
import time

# One sentence per call keeps the CPU-only tiny model fast; two sentences exercise the
# frameworks' sentence splitting and the server's continuation of the time base.
TEXT = "Hello from the framework check. The second sentence has a few more words."
# Long enough that an interruption lands while the server is still producing audio.
LONG_TEXT = (
    "This reply is long on purpose, so that the user can interrupt it while it is still "
    "being spoken, and the rest of it is never synthesised at all. It goes on and on."
)
AFTER_TEXT = "Sorry, go ahead."

FRAME_MS = 1000.0 / 7.5


class CheckFailed(Exception):
    """A check's condition did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def words(text: str) -> list[str]:
    return text.split()


def pcm_ms(n_bytes: int, sample_rate: int, sample_bytes: int = 2) -> float:
    return 1000.0 * n_bytes / sample_bytes / sample_rate


def check_words_cover(got: list[str], text: str, what: str) -> None:
    """The timed words are exactly the input's words, in order, spelled as sent."""
    got = [w.strip() for w in got if w.strip()]
    want = words(text)
    check(got == want, f"{what}: timed words {got} are not the input's words {want}")


def check_monotone(times: list[float], what: str) -> None:
    check(
        all(a <= b for a, b in zip(times, times[1:])),
        f"{what}: times are not monotone: {times}",
    )


class Summary:
    """Collects one line per check and prints them; `failed` says whether any failed."""

    def __init__(self, framework: str):
        self.framework = framework
        self.lines: list[str] = []
        self.failed = False

    async def run(self, name: str, coro) -> None:
        start = time.monotonic()
        try:
            detail = await coro
            status = "ok  "
        except CheckFailed as e:
            detail, status, self.failed = str(e), "FAIL", True
        except Exception as e:  # an exception from the framework is a failed check too
            detail, status, self.failed = f"{type(e).__name__}: {e}", "FAIL", True
        line = f"{status} {self.framework} {name} ({time.monotonic() - start:.1f} s): {detail}"
        print(line, flush=True)
        self.lines.append(line)

    def finish(self) -> None:
        print(f"== {self.framework} summary")
        for line in self.lines:
            print(line)
        sys.exit(1 if self.failed else 0)


def squash(text: str) -> str:
    """Whitespace collapsed, for comparing transcripts that frameworks re-space."""
    return re.sub(r"\s+", " ", text).strip()


def server_args(description: str) -> argparse.Namespace:
    """The command line every framework check takes: the server, its key and the voice."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--base-url", required=True, help="http://host:port of the server")
    parser.add_argument("--api-key", default="not-needed")
    parser.add_argument("--voice", default="alloy")
    return parser.parse_args()
