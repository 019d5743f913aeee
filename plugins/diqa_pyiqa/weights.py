"""Finding pretrained weight files offline, in a fixed order.

1. the ``weights`` option (a file, or a folder holding the file): ``score --weights`` sets it;
2. the weights folder (``MethodContext.weights_dir``: config ``weights_dir`` or ``$DIQA_BENCH_WEIGHTS``)
   holding the file under pyiqa's own file name;
3. diqa-bench's own download folder (``<cache dir>/weights``), then pyiqa's download cache
   (``<torch hub dir>/pyiqa/``, i.e. ``$TORCH_HOME/hub/pyiqa``), read only;
4. a download into diqa-bench's download folder, unless offline (``HF_HUB_OFFLINE=1`` or
   ``DIQA_BENCH_OFFLINE=1``), with a socket timeout so that a machine without network fails in
   seconds instead of hanging.

Whatever fails raises :class:`MethodUnavailable` with one line naming the file and where to put it.

Weight files are data, never code: a ``.pth`` file is a pickle, and unpickling one can run whatever
it contains, so every torch file is read with ``torch.load(weights_only=True)`` (tensors, numbers,
strings and containers of them; anything else is refused with one line). pyiqa itself loads several
files with ``weights_only=False``; :func:`safe_pyiqa_build` forces ``weights_only=True`` on every
``torch.load`` while a pyiqa model is built, and serves the files pyiqa asks for without writing
into its cache (a file copied there would be trusted by every later pyiqa user on the machine).
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
from diqa_bench.torch_files import load_tensors, refused  # noqa: F401 - one implementation for every plugin; imported from here too

WEIGHTS_ENV = "DIQA_BENCH_WEIGHTS"
OFFLINE_ENVS = ("DIQA_BENCH_OFFLINE", "HF_HUB_OFFLINE")
PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{}"  # pyiqa's get_url_from_name
DEFAULT_DOWNLOAD_TIMEOUT_S = 15.0


def download_dir() -> Path:
    """Where diqa-bench keeps weights it downloaded itself (never pyiqa's or torch's caches)."""
    from diqa_bench.cache import default_cache_dir

    return default_cache_dir() / "weights"


def pyiqa_cache_dir() -> Path:
    """Where pyiqa keeps downloaded weights (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``, fixed
    when pyiqa is imported; before that, what it will be: ``<torch hub dir>/pyiqa``)."""
    loaded = sys.modules.get("pyiqa.utils.download_util")
    if loaded is not None:
        return Path(loaded.DEFAULT_CACHE_DIR)
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        return Path(hub.get_dir()) / "pyiqa"
    # torch's own rule (torch.hub.get_dir), without importing torch: ``score``'s parent process
    # looks for weight files to key its cache and never needs torch itself
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub" / "pyiqa"


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
    for candidate in ([folder / file_name] if folder else []) + [download_dir() / file_name, pyiqa_cache_dir() / file_name]:
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


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _file_name(url: str, file_name: str | None) -> str:
    from urllib.parse import urlparse

    return file_name or os.path.basename(urlparse(url).path)


def _import_arch(metric: str | None) -> None:
    """pyiqa imports a metric's arch module on first use; import it now, so that the names it binds
    (``load_file_from_url``) exist to be redirected."""
    if not metric:
        return
    try:
        from pyiqa import archs
        from pyiqa.default_model_configs import DEFAULT_CONFIGS

        arch_type = DEFAULT_CONFIGS[metric]["metric_opts"]["type"]
        if arch_type not in archs.ARCH_REGISTRY:
            archs._lazy_import_arch(arch_type)
    except Exception:  # noqa: BLE001 - another pyiqa layout: the download guard below still holds
        pass


@contextmanager
def safe_pyiqa_build(ctx_weights_dir: str | os.PathLike | None, timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S, metric: str | None = None):
    """While active (around ``pyiqa.create_metric``, in one thread):

    - every ``torch.load`` call runs with ``weights_only=True`` (pyiqa passes ``False``), and a
      refused file raises MethodUnavailable with one line;
    - every file pyiqa fetches with ``load_file_from_url`` comes from the weights folder, diqa-bench's
      download folder or pyiqa's cache, in that order, in place (nothing is copied into pyiqa's
      cache); a missing one fails fast offline, else is downloaded into diqa-bench's folder.

    This covers metrics whose file names we do not know in advance (the generic ``pyiqa`` method)."""
    import torch
    from pyiqa.utils import download_util

    _import_arch(metric)
    folder = weights_folder(ctx_weights_dir)
    original_fetch = download_util.load_file_from_url
    original_download = download_util.download_url_to_file

    def refuse_cache_write(url, dst, *args, **kwargs):
        name = Path(dst).name
        raise MethodUnavailable(f"missing weights {name} (pyiqa would download it into its own cache): {where_to_put(name)}")

    def fetch(url, model_dir=None, progress=True, file_name=None):
        name = _file_name(url, file_name)
        pyiqa_dir = Path(model_dir) if model_dir else Path(download_util.DEFAULT_CACHE_DIR)
        for candidate in ([folder / name] if folder else []) + [download_dir() / name, pyiqa_dir / name]:
            if candidate.is_file():
                return str(candidate)
        return str(download(url, download_dir() / name, timeout_s))

    def safe_load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        kwargs.pop("pickle_module", None)  # a custom unpickler is what weights_only=True rules out
        args = args[:1]  # map_location stays; a positional pickle_module goes
        if not args:
            kwargs.setdefault("map_location", "cpu")
        try:
            return original_load(f, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - explained in one line
            raise refused(f if isinstance(f, (str, os.PathLike)) else "(stream)", exc) from None

    patched = [m for name, m in list(sys.modules.items()) if name.split(".")[0] == "pyiqa" and getattr(m, "load_file_from_url", None) is original_fetch]
    original_load = torch.load
    for m in patched:
        m.load_file_from_url = fetch
    torch.load = safe_load
    download_util.download_url_to_file = refuse_cache_write
    try:
        yield
    finally:
        torch.load = original_load
        download_util.download_url_to_file = original_download
        for m in patched:
            m.load_file_from_url = original_fetch


def resolve_weights(
    file_name: str,
    explicit: str | os.PathLike | None,
    ctx_weights_dir: str | os.PathLike | None,
    timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
) -> Path:
    """A local path to ``file_name``, downloading it only when no local copy exists."""
    found = find_weights(file_name, explicit, ctx_weights_dir)
    return found or download(PYIQA_WEIGHTS_URL.format(file_name), download_dir() / file_name, timeout_s)
