"""Atomic file writes shared by the run folder, the weights writer and the predictors.

A reader (another process, a resumed run) never sees a partial file: every writer goes to a
temporary file in the target's folder, is fsynced, then renamed over the target.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path, write, sync_dir=True):
    """Call ``write(tmp_path)``, fsync, rename to ``path``: readers never see a partial file.
    ``sync_dir=False`` leaves the folder's fsync (rename durability) to the caller."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes),
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_dir(folder):
    """Make a rename in ``folder`` durable (power loss), where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_atomic(src, dst, sync_dir=True):
    """Make ``dst`` hold ``src``'s bytes, atomically. A hard link costs nothing and stays
    intact when ``src`` is later replaced (a rename gives ``src`` a new inode)."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        if sync_dir:
            fsync_dir(dst.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, data, sync_dir=True):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
    atomic_write_bytes(path, write, sync_dir)


def write_csv(path, rows, sync_dir=True):
    keys = ["epoch"] + sorted({k for r in rows for k in r if k != "epoch"})

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(",".join(keys) + "\n")
            for r in rows:
                f.write(",".join(str(r.get(k, "")) for k in keys) + "\n")
    atomic_write_bytes(path, write, sync_dir)
