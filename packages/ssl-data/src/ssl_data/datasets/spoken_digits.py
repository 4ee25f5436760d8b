"""Spoken digits "zero" to "nine" synthesised by espeak-ng in several voices.

Each (voice, digit) is rendered once with ``espeak-ng -v <voice> -w <file> <word>`` into a cache
folder named after the espeak-ng version, so a cache never mixes two synthesiser versions. The
synthesis is deterministic: the same version renders the same bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl_data.datasets.audio_folder import AudioFiles, Verify
from ssl_data.datasets.corrupt import OnCorrupt
from ssl_data.errors import DatasetNotFoundError, SslDataError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Five English accents and several of espeak-ng's voice variants (+f female, +m male, klatt).
VOICES = (
    "en-us", "en-us+f3", "en-us+m3", "en-us+klatt", "en-gb",
    "en-gb+f2", "en-gb-scotland", "en-gb-x-rp+f4", "en-029+m5", "en-us-nyc+f1",
)  # fmt: skip


def espeak_version(executable: str = "espeak-ng") -> str:
    """The espeak-ng version string (e.g. ``"1.51"``).

    Raises:
        DatasetNotFoundError: espeak-ng is not installed.
    """
    path = shutil.which(executable)
    if path is None:
        raise DatasetNotFoundError(
            f"{executable} not found on PATH; install it (Debian: apt-get install espeak-ng) to "
            "render the spoken digits, or point cache_dir at an existing render"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    return words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words else "unknown"


def default_cache_dir() -> Path:
    """``$SSL_DATA_SPOKEN_DIGITS``, else ``$XDG_CACHE_HOME/ssl_data/spoken_digits`` (or
    ``~/.cache/ssl_data/spoken_digits``)."""
    env = os.environ.get("SSL_DATA_SPOKEN_DIGITS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssl_data" / "spoken_digits"


def render_spoken_digits(
    cache_dir: str | Path | None = None,
    voices: Sequence[str] = VOICES,
    executable: str = "espeak-ng",
) -> list[Path]:
    """Render every (voice, digit) not yet in the cache; return the files voice-major.

    Files are ``<cache_dir>/espeak-ng-<version>/<voice>/<digit>-<word>.wav`` (22,050 Hz mono,
    16-bit), each written to a temporary name and renamed, so concurrent callers never see a
    partial file.

    Args:
        cache_dir: Cache folder; default :func:`default_cache_dir`.
        voices: espeak-ng voice names (``-v``), e.g. ``"en-us+f3"``.
        executable: The espeak-ng program.

    Returns:
        ``len(voices) * 10`` paths: voice 0's digits 0-9, then voice 1's, ...

    Without espeak-ng, a complete earlier render in ``cache_dir`` (any version) is returned.

    Raises:
        DatasetNotFoundError: espeak-ng is not installed and the cache is incomplete.
        SslDataError: espeak-ng fails on a voice (e.g. an unknown voice name); the message
            names the voice and quotes espeak-ng's error.
        ValueError: No voice, or a voice name with a path separator.
    """
    if not voices:
        raise ValueError("voices must name at least one espeak-ng voice")
    for v in voices:
        if not v or "/" in v or os.sep in v or v.startswith("."):
            raise ValueError(f"invalid espeak-ng voice name {v!r}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if shutil.which(executable) is None:
        # No synthesiser: a complete earlier render is still usable.
        for folder in sorted(root.glob("espeak-ng-*"), reverse=True):
            cached = [
                folder / v / f"{d}-{w}.wav" for v in voices for d, w in enumerate(DIGIT_WORDS)
            ]
            if all(p.is_file() for p in cached):
                return cached
    version = espeak_version(executable)
    folder = root / f"espeak-ng-{version}"
    paths: list[Path] = []
    for voice in voices:
        (folder / voice).mkdir(parents=True, exist_ok=True)
        for d, word in enumerate(DIGIT_WORDS):
            target = folder / voice / f"{d}-{word}.wav"
            paths.append(target)
            if target.is_file():
                continue
            fd, tmp = tempfile.mkstemp(suffix=".wav", dir=folder / voice)
            os.close(fd)
            try:
                run = subprocess.run([executable, "-v", voice, "-w", tmp, word],
                                     capture_output=True, text=True)  # fmt: skip
                if run.returncode != 0 or os.path.getsize(tmp) == 0:
                    raise SslDataError(
                        f"espeak-ng could not render {word!r} with voice {voice!r} "
                        f"(exit {run.returncode}): {run.stderr.strip() or run.stdout.strip()}"
                    )
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return paths


class SpokenDigits(AudioFiles):
    """The digits "zero" to "nine" spoken by espeak-ng voices: 10 classes, 10 clips per voice.

    Items are ``(clip (T,) float32, digit)``; :attr:`voice_ids` gives each clip's voice (an
    index into :attr:`voices`), e.g. to hold out voices for evaluation. The first use renders
    the clips (about 30 ms each) into the cache; later uses read them.

    Args:
        voices: espeak-ng voices; default :data:`VOICES` (10 voices, 100 clips).
        cache_dir: Render cache; default :func:`default_cache_dir`.
        sample_rate: Rate of the returned clips in Hz (espeak-ng renders 22,050 Hz).
        on_corrupt: ``"skip"`` or ``"raise"`` for an unreadable cached file.
        verify: ``"header"``, ``"full"`` or ``"none"`` (see :class:`AudioFiles`).

    Attributes:
        voices: The voice names.
        voice_ids: ``(N,) int64`` voice index of each clip.

    Raises:
        DatasetNotFoundError: espeak-ng is not installed.
        SslDataError: espeak-ng fails on a voice.
    """

    def __init__(
        self,
        voices: Sequence[str] = VOICES,
        cache_dir: str | Path | None = None,
        *,
        sample_rate: int | None = 16000,
        on_corrupt: OnCorrupt = "skip",
        verify: Verify = "header",
    ):
        paths = render_spoken_digits(cache_dir, voices)
        labels = np.tile(np.arange(10), len(voices))
        super().__init__(paths, labels, sample_rate=sample_rate, classes=DIGIT_WORDS,
                         on_corrupt=on_corrupt, verify=verify)  # fmt: skip
        kept = {p: k for k, p in enumerate(paths)}
        all_ids = np.repeat(np.arange(len(voices)), 10)
        self.voice_ids = all_ids[[kept[p] for p in self.paths]].astype(np.int64)
        self.voices = tuple(voices)
