"""Moving files between the instructor (root) and students, safely.

Students own their inboxes and homes, so everything they contain is hostile to a process running
as root: links to ``/etc/shadow`` or to a classmate's home, hard links, FIFOs, files swapped
while we read them. The rules here:

- **Reading an inbox** (:func:`read_inbox`): every folder and file is opened relative to its
  parent's descriptor with ``O_NOFOLLOW``, so no link is ever followed; only regular files owned
  by that student, with one link and at most ``MAX_BYTES``, are taken. The submission time is
  the file's ``ctime``, which the kernel sets and a student cannot move back (``touch`` sets
  only ``mtime``); the file is re-checked after reading, and a change meanwhile means a retry.
- **Writing into a home** (:func:`deliver`): done by a process running *as the student*, so a
  link they planted can only lead where they could write anyway. The file is written under a
  temporary name and renamed into place, mode 0600 in a 0700 folder.
- **Inboxes** (:func:`ensure_inbox`) are created by root inside the root-owned ``inbox/``
  folder, so no student can create, rename or replace another's.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import stat
from dataclasses import dataclass

from labkit.hub import accounts

MAX_BYTES = 20 * 1024 * 1024  # a notebook larger than this is not a submission
SUFFIX = ".ipynb"


class ExchangeError(RuntimeError):
    pass


@dataclass
class Found:
    """One submission file read from an inbox."""

    name: str          # its name in the inbox (the student chose it; informative only)
    data: bytes
    sha256: str
    ctime: float       # trusted: when the file last changed (set by the kernel)


def ensure_inbox(inboxes: str | os.PathLike, unix_name: str) -> str:
    """``inboxes/<unix_name>``, owned by the student, mode 0700 (created if missing)."""
    entry = pwd.getpwnam(unix_name)
    path = os.path.join(inboxes, unix_name)
    try:
        os.mkdir(path, 0o700)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != entry.pw_uid:
            raise ExchangeError(f"{path} is not {unix_name}'s folder (a link, a file or another owner): "
                                "remove it and run this again") from None
    os.chmod(path, 0o700)
    return path


def remove_inbox(inboxes: str | os.PathLike, unix_name: str) -> None:
    """Delete a student's inbox (with their account): a later account given the same uid must not
    inherit it."""
    import shutil

    path = os.path.join(inboxes, unix_name)
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _open_dir(name: str, dir_fd: int | None, uid: int) -> int:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    if os.fstat(fd).st_uid != uid:
        os.close(fd)
        raise PermissionError(f"{name} does not belong to the student")
    return fd


def _read_one(name: str, dir_fd: int, uid: int) -> Found | str:
    """The file ``name`` in ``dir_fd`` as a :class:`Found`, or why it was rejected."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
    except OSError as exc:
        return f"{name}: not opened ({'a link' if exc.errno == 40 else exc.strerror})"
    try:
        for _ in range(3):
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return f"{name}: not a regular file"
            if before.st_uid != uid:
                return f"{name}: belongs to uid {before.st_uid}, not the student"
            if before.st_nlink != 1:
                return f"{name}: has {before.st_nlink} hard links"
            if before.st_size > MAX_BYTES:
                return f"{name}: larger than {MAX_BYTES // 2**20} MB"
            os.lseek(fd, 0, os.SEEK_SET)
            chunks, size = [], 0
            while size <= MAX_BYTES:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            after = os.fstat(fd)
            if (after.st_ctime_ns, after.st_size) == (before.st_ctime_ns, before.st_size) and size <= MAX_BYTES:
                data = b"".join(chunks)
                return Found(name, data, hashlib.sha256(data).hexdigest(), after.st_ctime)
        return f"{name}: kept changing while it was read"
    finally:
        os.close(fd)


def read_inbox(inboxes: str | os.PathLike, unix_name: str, assignment: str) -> tuple[list[Found], list[str]]:
    """Every ``*.ipynb`` in ``inboxes/<unix_name>/<assignment>/``; and what was rejected, with why."""
    entry = pwd.getpwnam(unix_name)
    found, rejected = [], []
    try:
        top = os.open(inboxes, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ExchangeError(f"cannot open {inboxes}: {exc.strerror}") from exc
    try:
        try:
            inbox = _open_dir(unix_name, top, entry.pw_uid)
        except FileNotFoundError:
            return [], []
        except (OSError, PermissionError) as exc:
            return [], [f"the inbox itself was rejected ({exc})"]
        try:
            try:
                sub = _open_dir(assignment, inbox, entry.pw_uid)
            except FileNotFoundError:
                return [], []
            except (OSError, PermissionError) as exc:
                return [], [f"{assignment}/ was rejected ({exc})"]
            try:
                for name in sorted(os.listdir(sub)):
                    if name.startswith(".") or not name.endswith(SUFFIX):
                        continue  # temporary files of a submit in progress, and anything else
                    got = _read_one(name, sub, entry.pw_uid)
                    (found if isinstance(got, Found) else rejected).append(got)
            finally:
                os.close(sub)
        finally:
            os.close(inbox)
    finally:
        os.close(top)
    return found, rejected


# Runs as the student (their uid, their group only): it can only write where they may.
_DELIVER = r'''
set -eu
umask 077
mkdir -p -- "$1"
chmod 700 -- "$1"
tmp=$(mktemp -- "$1/.incoming.XXXXXXXX")
cat > "$tmp"
chmod 600 -- "$tmp"
mv -f -- "$tmp" "$1/$2"
'''


def deliver(unix_name: str, folder: str, filename: str, data: bytes) -> str:
    """Write ``data`` to ``~unix_name/folder/filename`` as the student; readable only by them."""
    if "/" in filename or filename.startswith(".") or not filename or ".." in folder.split("/"):
        raise ExchangeError(f"bad destination {folder}/{filename}")
    entry = pwd.getpwnam(unix_name)
    proc = accounts.run_as(unix_name, ["/bin/sh", "-c", _DELIVER, "deliver", folder, filename], input=data)
    if proc.returncode != 0:
        raise ExchangeError(f"could not write ~{unix_name}/{folder}/{filename}: {proc.stderr.decode(errors='replace').strip()}")
    return os.path.join(entry.pw_dir, folder, filename)
