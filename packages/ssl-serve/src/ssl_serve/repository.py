"""The model repository: `<repository>/<model name>/<version>/` folders, each holding a bundle.

Folder names, not the names inside `bundle.json`, decide what a model is served as, so a bundle
can be copied under another name or version (the way Triton treats its model repository).
Entries whose name starts with "." are skipped: the exporter builds bundles in such hidden
temporary folders before renaming them into place.

:func:`scan_versions` reads a repository leniently (a broken version folder is reported, not
raised) and :func:`bundle_fingerprint` tells when a bundle's files changed: the server's hot
reload (:mod:`ssl_serve.server.reload`) uses both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ssl_serve.bundle import BUNDLE_FILE, MODEL_FILE, Bundle, read_bundle
from ssl_serve.errors import BundleError, ModelNotFoundError

log = logging.getLogger(__name__)

# A bundle folder's file stats: (file name, size in bytes, mtime in ns, inode) per file, sorted.
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class ModelEntry:
    """One version of one model in a repository.

    Attributes:
        name: Model name (the folder name).
        version: Version (the folder name).
        path: The version folder, holding `model.onnx` and `bundle.json`.
        bundle: The validated `bundle.json`.
        fingerprint: :func:`bundle_fingerprint` of the folder, taken before `bundle.json` was
            read (so a later change of any file shows as a different fingerprint).
    """

    name: str
    version: str
    path: Path
    bundle: Bundle
    fingerprint: Fingerprint = ()

    @property
    def model_path(self) -> Path:
        """The ONNX file of this version."""
        return self.path / MODEL_FILE


def empty_repository_hint(root: str | Path) -> str:
    """Explain why a repository folder holds no model version and how to lay it out.

    Args:
        root: A repository folder in which :class:`ModelRepository` found no version.

    Returns:
        A message (without the path prefix :class:`~ssl_serve.errors.BundleError` adds) naming
        the expected layout; when ``root`` is itself a bundle folder (holds `bundle.json`), or a
        model folder (its subfolders hold `bundle.json`), it says where the repository is.
    """
    root = Path(root)
    message = f"no model versions found; expected {root / '<name>' / '<version>' / BUNDLE_FILE}"
    if (root / BUNDLE_FILE).is_file():
        return (
            f"{message}. {root} is a bundle folder (it holds {BUNDLE_FILE}), not a repository: "
            f"when it sits at <repository>/<name>/<version>, pass the folder two levels up "
            f"({root.parent.parent}); otherwise lay one out, e.g. "
            f"`mkdir -p repo/NAME && mv {root} repo/NAME/1` and pass --repository repo"
        )
    versions = sorted(p.parent.name for p in root.glob(f"*/{BUNDLE_FILE}"))
    if versions:
        return (
            f"{message}. {root} is a model folder (its version folder(s) "
            f"{', '.join(versions)} hold "
            f"{BUNDLE_FILE}), not a repository: pass its parent ({root.parent})"
        )
    return message


def version_sort_key(version: str) -> tuple[int, int, str]:
    """Sort key for versions: integers in numeric order, above non-integer names (string order).

    Args:
        version: A version folder name, e.g. "2", "10" or "2026-11-29".

    Returns:
        A key where "10" > "9" > "2026-11-29" > "1.0-rc".
    """
    if version.isdigit():
        return (1, int(version), "")
    return (0, 0, version)


def version_folders(root: str | Path) -> list[Path]:
    """Every ``<root>/<name>/<version>/`` folder, hidden names (".") skipped, sorted.

    Args:
        root: A model repository folder.

    Returns:
        The version folders, by model name, then folder name (not version order).
    """
    folders: list[Path] = []
    for model_dir in sorted(Path(root).iterdir()):
        if model_dir.name.startswith(".") or not model_dir.is_dir():
            continue
        folders += [
            d for d in sorted(model_dir.iterdir()) if not d.name.startswith(".") and d.is_dir()
        ]
    return folders


def bundle_fingerprint(folder: str | Path) -> Fingerprint:
    """Size, modification time and inode of every file directly in a bundle folder.

    Cheap (one ``stat`` per file, no reading), and it changes when a file is rewritten in place
    (size or mtime) or replaced by a rename (inode), e.g. a new `model.onnx` copied over.

    Args:
        folder: A version folder.

    Returns:
        ``(file name, size in bytes, mtime in ns, inode)`` per non-hidden regular file, sorted
        by name; empty when the folder is gone.
    """
    stats = []
    try:
        children = sorted(Path(folder).iterdir())
    except OSError:
        return ()
    for path in children:
        if path.name.startswith("."):
            continue
        try:
            st = path.stat()
        except OSError:  # removed while scanning
            continue
        if path.is_file():
            stats.append((path.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(stats)


def read_entry(version_dir: Path) -> ModelEntry:
    """The entry of one ``<name>/<version>/`` folder, its bundle.json validated.

    Args:
        version_dir: A version folder of a repository.

    Returns:
        The entry, named after the folders (a warning is logged when bundle.json names another
        model or version: folder names win), with its :func:`bundle_fingerprint`.

    Raises:
        BundleError: The folder lacks `model.onnx` or `bundle.json`, or bundle.json is invalid.
    """
    fingerprint = bundle_fingerprint(version_dir)
    for required in (BUNDLE_FILE, MODEL_FILE):
        if not (version_dir / required).is_file():
            raise BundleError(
                version_dir,
                f"version folder lacks {required}; a bundle holds {MODEL_FILE} and "
                f"{BUNDLE_FILE} (see `ssl-serve export --help`)",
            )
    bundle = read_bundle(version_dir)
    name, version = version_dir.parent.name, version_dir.name
    if (bundle.name, bundle.version) != (name, version):
        log.warning(
            "%s: bundle.json says %s/%s; serving it as %s/%s (folder names win)",
            version_dir,
            bundle.name,
            bundle.version,
            name,
            version,
        )
    return ModelEntry(name, version, version_dir, bundle, fingerprint)


class ModelRepository:
    """A folder of models, each with one or more version folders.

    Args:
        root: The repository folder.
        entries: The entries to hold instead of scanning ``root`` (a snapshot the server's hot
            reload assembles from folders it loaded); None scans.

    Raises:
        BundleError: ``root`` is not a folder, a version folder lacks `model.onnx` or
            `bundle.json`, or a `bundle.json` is invalid. One broken model stops the scan
            rather than being silently skipped.
    """

    def __init__(self, root: str | Path, entries: list[ModelEntry] | None = None) -> None:
        self.root = Path(root)
        if entries is not None:
            self._entries: dict[str, dict[str, ModelEntry]] = {}
            for e in entries:
                self._entries.setdefault(e.name, {})[e.version] = e
            return
        if not self.root.is_dir():
            raise BundleError(self.root, "model repository folder does not exist")
        self._entries = self._scan()

    def _scan(self) -> dict[str, dict[str, ModelEntry]]:
        models: dict[str, dict[str, ModelEntry]] = {}
        for model_dir in sorted(self.root.iterdir()):
            if model_dir.name.startswith(".") or not model_dir.is_dir():
                continue
            versions: dict[str, ModelEntry] = {}
            for version_dir in sorted(model_dir.iterdir()):
                if version_dir.name.startswith(".") or not version_dir.is_dir():
                    continue
                versions[version_dir.name] = read_entry(version_dir)
            if versions:
                models[model_dir.name] = versions
            elif (model_dir / BUNDLE_FILE).is_file():
                # Usually --repository one level too deep (a model folder).
                log.warning(
                    "%s: a bundle folder where a model folder belongs (the layout is "
                    "<repository>/<name>/<version>/%s); skipped",
                    model_dir,
                    BUNDLE_FILE,
                )
            else:
                log.warning("%s: model folder has no version folders; skipped", model_dir)
        return models

    def entries(self) -> list[ModelEntry]:
        """Every version of every model, by name, then by version (highest last)."""
        return [
            versions[v]
            for _, versions in sorted(self._entries.items())
            for v in sorted(versions, key=version_sort_key)
        ]

    def names(self) -> list[str]:
        """The model names, sorted."""
        return sorted(self._entries)

    def resolve(self, name: str, version: str = "") -> ModelEntry:
        """The entry of ``name`` at ``version``, or at its highest version when ``version`` is "".

        Args:
            name: Model name.
            version: Version folder name; "" selects the highest (see :func:`version_sort_key`).

        Returns:
            The matching entry.

        Raises:
            ModelNotFoundError: No such model, or no such version of it (the message lists what
                exists).
        """
        versions = self._entries.get(name)
        if versions is None:
            raise ModelNotFoundError(name, version, available=self.names())
        if not version:
            return versions[max(versions, key=version_sort_key)]
        if version not in versions:
            raise ModelNotFoundError(
                name, version, available=sorted(versions, key=version_sort_key)
            )
        return versions[version]

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())
