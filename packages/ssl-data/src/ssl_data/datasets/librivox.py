"""LibriVox utterances with transcripts, from Debian's ``pocketsphinx-testdata``.

The package's ``/usr/share/pocketsphinx/test/data/librivox/`` folder holds five 16 kHz
utterances (24.7 s in all) of the LibriVox public-domain recording of Jane Austen's "Sense and
Sensibility", chapter 1, with their transcripts in CMU Sphinx's format
(``<s> words </s> (utterance-id)``) in ``transcription``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ssl_data.datasets.audio_folder import AudioFiles, Verify
from ssl_data.datasets.corrupt import OnCorrupt
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

DEBIAN_ROOT = Path("/usr/share/pocketsphinx/test/data/librivox")
_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")


def read_transcription(path: str | Path) -> dict[str, str]:
    """Parse a CMU Sphinx transcription file: ``<s> words </s> (utterance-id)`` per line.

    Args:
        path: The file.

    Returns:
        ``{utterance id: words}`` in file order, without the ``<s>``/``</s>`` markers.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptFileError: A non-empty line does not match the format (names file and line).
    """
    out: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            raise CorruptFileError(
                f"{path}, line {n}: expected '<s> words </s> (utterance-id)', got {line!r}"
            )
        out[m.group("id")] = " ".join(m.group("text").split())
    return out


def librivox_root() -> Path:
    """``$SSL_DATA_LIBRIVOX`` when set, else the Debian folder (whether or not it exists)."""
    env = os.environ.get("SSL_DATA_LIBRIVOX")
    return Path(env) if env else DEBIAN_ROOT


class LibriVoxUtterances(AudioFiles):
    """The transcribed LibriVox utterances of ``pocketsphinx-testdata``: ``(clip, transcript)``.

    Every ``<id>.wav`` (or ``.flac``) in the folder whose id appears in ``transcription`` is an
    item, in transcript order; wav files without a transcript are left out and listed in
    :attr:`untranscribed`, transcripts without a file go through the ``on_corrupt`` policy. On
    Debian: 5 utterances, 2.99 to 7.1 s, 16 kHz.

    Args:
        root: Folder with the wav files and ``transcription``; default :func:`librivox_root`.
        sample_rate: Rate of the returned clips in Hz (the recordings are 16 kHz).
        on_corrupt: ``"skip"`` or ``"raise"`` for an unreadable or missing recording.
        verify: ``"header"``, ``"full"`` or ``"none"`` (see :class:`AudioFiles`).

    Attributes:
        utterance_ids: ``list[str]`` id of each item (file stem).
        transcripts: ``list[str]`` lower-case words of each item.
        untranscribed: ``list[Path]`` audio files without a transcript.

    Raises:
        DatasetNotFoundError: No ``transcription`` file in ``root``.
        CorruptFileError: A malformed transcript line, or a bad file with ``on_corrupt="raise"``.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        sample_rate: int | None = 16000,
        on_corrupt: OnCorrupt = "skip",
        verify: Verify = "header",
    ):
        folder = Path(root) if root is not None else librivox_root()
        transcription = folder / "transcription"
        if not transcription.is_file():
            raise DatasetNotFoundError(
                f"{transcription} not found; install Debian's pocketsphinx-testdata or set "
                "$SSL_DATA_LIBRIVOX to a folder with <id>.wav files and a 'transcription' file"
            )
        texts = read_transcription(transcription)
        audio = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in (".wav", ".flac")}
        paths = [audio.get(i, folder / f"{i}.wav") for i in texts]
        super().__init__(paths, None, sample_rate=sample_rate, on_corrupt=on_corrupt,
                         verify=verify)  # fmt: skip
        self.utterance_ids = [p.stem for p in self.paths]
        self.transcripts = [texts[i] for i in self.utterance_ids]
        self.untranscribed = [p for s, p in audio.items() if s not in texts]
        self.root = folder

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:  # type: ignore[override]
        """``(clip (T,) float32, transcript)`` (under ``"skip"``, a clip that no longer decodes
        is replaced by the next readable one, with its transcript).

        Raises:
            IndexError: ``i`` out of range.
            CorruptFileError: The clip cannot be decoded under ``"raise"``, or no clip decodes.
        """
        j, clip = self.load(i)
        return clip, self.transcripts[j]
