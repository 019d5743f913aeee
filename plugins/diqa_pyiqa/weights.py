"""Finding pretrained weight files offline, in a fixed order.

1. the ``weights`` option (a file, or a folder holding the file): ``score --weights`` sets it;
2. the weights folder (``MethodContext.weights_dir``: config ``weights_dir`` or ``$DIQA_BENCH_WEIGHTS``)
   holding the file under pyiqa's own file name;
3. pyiqa's download cache (``<torch hub dir>/pyiqa/``, i.e. ``$TORCH_HOME/hub/pyiqa``);
4. a download into that cache, unless offline (``HF_HUB_OFFLINE=1`` or ``DIQA_BENCH_OFFLINE=1``),
   with a socket timeout so that a machine without network fails in seconds instead of hanging.

Whatever fails raises :class:`MethodUnavailable` with one line naming the file and where to put it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from diqa_bench.errors import MethodUnavailable

WEIGHTS_ENV = "DIQA_BENCH_WEIGHTS"
OFFLINE_ENVS = ("DIQA_BENCH_OFFLINE", "HF_HUB_OFFLINE")
PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{}"  # pyiqa's get_url_from_name
DEFAULT_DOWNLOAD_TIMEOUT_S = 15.0


def pyiqa_cache_dir() -> Path:
    """Where pyiqa keeps downloaded weights (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``, fixed
    when pyiqa is imported; before that, what it will be: ``<torch hub dir>/pyiqa``)."""
    loaded = sys.modules.get("pyiqa.utils.download_util")
    if loaded is not None:
        return Path(loaded.DEFAULT_CACHE_DIR)
    import torch.hub

    return Path(torch.hub.get_dir()) / "pyiqa"


def is_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_ENVS)


def weights_folder(ctx_weights_dir: str | os.PathLike | None) -> Path | None:
    if ctx_weights_dir:
        return Path(ctx_weights_dir).expanduser()
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else None


def where_to_put(file_name: str) -> str:
    return (
        f"put {file_name} in the weights folder (config weights_dir or ${WEIGHTS_ENV}) "
        f"or in pyiqa's cache {pyiqa_cache_dir()}, or pass --weights PATH"
    )


def find_weights(file_name: str, explicit: str | os.PathLike | None, ctx_weights_dir: str | os.PathLike | None) -> Path | None:
    """The first existing candidate in resolution order, or None. A missing explicit path is an error
    (the user named it), not a reason to fall back silently."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / file_name
        if not path.is_file():
            raise MethodUnavailable(f"weights file {path} not found (expected pyiqa's {file_name})")
        return path
    folder = weights_folder(ctx_weights_dir)
    for candidate in ([folder / file_name] if folder else []) + [pyiqa_cache_dir() / file_name]:
        if candidate.is_file():
            return candidate
    return None


def download(url: str, target: Path, timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` atomically (no half file left behind), failing fast offline."""
    file_name = target.name
    if is_offline():
        raise MethodUnavailable(f"missing weights {file_name} (offline, no download): {where_to_put(file_name)}")
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            urllib.request.urlopen(url, timeout=timeout_s) as response,
            tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{file_name}.", delete=False) as tmp,
        ):
            tmp_path = Path(tmp.name)
            shutil.copyfileobj(response, tmp, length=1 << 20)
        os.replace(tmp_path, target)
    except Exception as exc:  # noqa: BLE001 - no network, DNS failure, HTTP error, full disk: all mean "not here"
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MethodUnavailable(f"missing weights {file_name} (download failed: {reason}): {where_to_put(file_name)}") from None
    return target


@contextmanager
def guarded_pyiqa_downloads(ctx_weights_dir: str | os.PathLike | None, timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S):
    """While active, every download pyiqa starts (all go through ``download_util.download_url_to_file``)
    first takes the file from the weights folder, else fails fast offline, else downloads with a timeout.
    This covers metrics whose file names we do not know in advance (the generic ``pyiqa`` method)."""
    from pyiqa.utils import download_util

    folder = weights_folder(ctx_weights_dir)

    def fetch(url, dst, *args, **kwargs):
        local = folder / Path(dst).name if folder else None
        if local is not None and local.is_file():
            shutil.copyfile(local, dst)  # pyiqa loads from its cache path, so the file must be there
        else:
            download(url, Path(dst), timeout_s)

    original = download_util.download_url_to_file
    download_util.download_url_to_file = fetch
    try:
        yield
    finally:
        download_util.download_url_to_file = original


def resolve_weights(
    file_name: str,
    explicit: str | os.PathLike | None,
    ctx_weights_dir: str | os.PathLike | None,
    timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
) -> Path:
    """A local path to ``file_name``, downloading it only when no local copy exists."""
    found = find_weights(file_name, explicit, ctx_weights_dir)
    return found or download(PYIQA_WEIGHTS_URL.format(file_name), pyiqa_cache_dir() / file_name, timeout_s)
