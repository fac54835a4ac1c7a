"""Small file helpers: bounded reads, atomic writes, and the trust check on policy files.

aiohook runs as root (the libvirt hook, `doctor --apply`, `rewrite`, `facts -o`),
so both directions are guarded:

- writes (atomic_write) never follow a link: the temp file is created with
  O_CREAT|O_EXCL|O_NOFOLLOW inside the target's directory (held open, so every
  step happens in the same directory whatever is renamed meanwhile), filled,
  fchmod'ed and fsynced through its descriptor, then renamed over the target.
  A rename replaces a symlink at the target itself, never the file it points to.
- policy reads (read_policy, for the hook) refuse a settings or rules file that
  someone else could have written, as sshd's StrictModes does: see trust_problem.
"""

from __future__ import annotations

import os
import sys

from aiohook.errors import FileAccessError, PolicyError

# Set by the libvirt hook (aiohook.hook.entry) before it loads settings and rules:
# read_policy then refuses files others can write. The CLI reads what it is told.
strict_modes = False

_MAX_LINKS = 40  # symlinks followed while checking one path (the kernel's own limit)


class UntrustedPolicyError(PolicyError):
    """A settings or rules file that a user other than root could have written."""


def read_bounded(path: str, limit: int, error: type = FileAccessError) -> bytes:
    """Read a file ('-' is stdin) but never more than limit+1 bytes into memory."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except FileNotFoundError:
        raise FileAccessError("no such file", file=path) from None
    except IsADirectoryError:
        raise FileAccessError("is a directory", file=path) from None
    except PermissionError:
        raise FileAccessError("permission denied", file=path) from None
    except OSError as exc:
        raise FileAccessError(exc.strerror or str(exc), file=path) from None
    return data


# ---------------------------------------------------------------- atomic writes


def _temp_name() -> str:
    return f".aiohook-{os.urandom(8).hex()}.tmp"


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write data to path so that readers see the old file or the new one, never half.

    Safe against links planted by other users, even in a directory they can
    write: the temp file is created O_EXCL|O_NOFOLLOW (a planted link makes the
    create fail, and another name is tried), its mode is set through the
    descriptor, and the final rename replaces whatever is at `path` (a symlink
    included) instead of writing through it. The directory is opened once and
    every step is relative to it. If the name we renamed is then not our file
    (someone raced a rename inside a directory they can write), that is an error.
    A symlink to a directory among the parents of `path` is followed: that part
    of the path is the caller's choice.
    """
    directory, name = os.path.split(os.path.abspath(path))
    if not name or name in (".", ".."):
        raise FileAccessError("not a file name", file=path)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileAccessError(f"cannot write: {exc.strerror}", file=path) from None
    try:
        _write_in(dir_fd, name, data, mode, path)
    finally:
        os.close(dir_fd)


def _write_in(dir_fd: int, name: str, data: bytes, mode: int, path: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = _temp_name()
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue  # a name (or a planted link) already there: never reuse it
        except OSError as exc:
            raise FileAccessError(f"cannot write: {exc.strerror}", file=path) from None
    else:
        raise FileAccessError("cannot write: no free temporary name", file=path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
            ours = os.fstat(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise FileAccessError(f"cannot write: {exc.strerror}", file=path) from None
    finally:
        os.close(fd)
    try:
        placed = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        placed = None
    if placed is None or (placed.st_dev, placed.st_ino) != (ours.st_dev, ours.st_ino):
        raise FileAccessError("cannot write: the directory changed while writing "
                              "(someone else can write it)", file=path)


# ---------------------------------------------------------------- trusted policy files


def _owner_ok(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def _who(st: os.stat_result) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(st.st_uid).pw_name} (uid {st.st_uid})"
    except (ImportError, KeyError):
        return f"uid {st.st_uid}"


def _dir_problem(directory: str) -> str | None:
    import stat

    try:
        st = os.stat(directory)
    except OSError as exc:
        return f"cannot check directory {directory}: {exc.strerror}"
    if not _owner_ok(st.st_uid):
        return f"directory {directory} is owned by {_who(st)}"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        which = "group- and world-" if st.st_mode & 0o022 == 0o022 else (
            "group-" if st.st_mode & 0o020 else "world-")
        return (f"directory {directory} is {which}writable without the sticky bit "
                f"(mode {stat.S_IMODE(st.st_mode):04o})")
    return None


def _resolve_checked(path: str) -> tuple[str, str | None]:
    """Resolve `path` one component at a time, checking every directory whose
    entries are used (the lexical parents and those of every symlink target)
    and the owner of every symlink followed. (real path, first problem or None)."""
    import stat

    todo = [c for c in os.path.abspath(path).split("/") if c]
    current, links, seen = "/", 0, set()
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        if current not in seen:
            seen.add(current)
            problem = _dir_problem(current)
            if problem:
                return current, problem
        entry = os.path.join(current, part)
        try:
            st = os.lstat(entry)
        except OSError as exc:
            return entry, f"cannot check {entry}: {exc.strerror}"
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return entry, f"too many symbolic links in {path}"
            if not _owner_ok(st.st_uid):
                return entry, f"symlink {entry} is owned by {_who(st)}"
            target = os.readlink(entry)
            if target.startswith("/"):
                current = "/"
            todo[:0] = [c for c in target.split("/") if c]
        else:
            current = entry
    return current, None


def trust_problem(path: str, st: os.stat_result | None = None) -> str | None:
    """Why a policy file must not be trusted by a root process, or None.

    sshd's StrictModes, for files that decide what root does: the file must be
    owned by root (or by the user running aiohook) and be writable by nobody
    else (no group or world write bit), and so must every directory used to
    reach it, following symlinks (each link owned by root too); a directory
    others can write is accepted only with the sticky bit, where they cannot
    rename or remove what they do not own. `st` is the fstat of the open file,
    so the check is about the file that was read, not the one the name points
    to now. Packaged files are part of aiohook's code and are trusted as it is.
    """
    import stat

    from aiohook.paths import PACKAGE_DIR

    try:
        st = st or os.stat(path)
        if os.path.realpath(path).startswith(os.path.realpath(PACKAGE_DIR) + "/"):
            packaged = os.stat(os.path.realpath(path))
            if (packaged.st_dev, packaged.st_ino) == (st.st_dev, st.st_ino):
                return None
    except OSError as exc:
        return f"cannot check {path}: {exc.strerror}"
    real, problem = _resolve_checked(path)
    if problem:
        return problem
    try:
        now = os.stat(real, follow_symlinks=False)
    except OSError as exc:
        return f"cannot check {real}: {exc.strerror}"
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        return f"{path} changed while it was checked"
    if not stat.S_ISREG(st.st_mode):
        return f"{real} is not a regular file"
    if not _owner_ok(st.st_uid):
        return f"it is owned by {_who(st)}"
    if st.st_mode & 0o022:
        which = "group- and world-" if st.st_mode & 0o022 == 0o022 else (
            "group-" if st.st_mode & 0o020 else "world-")
        return f"it is {which}writable (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def read_policy(path: str, limit: int, *, strict: bool | None = None) -> bytes:
    """read_bounded, plus the StrictModes check when the hook asked for it
    (`strict_modes`, or strict=True): whoever can write the settings or rules
    can make every VM on the host refuse to start, so only root may.

    The file is looked up once with O_PATH, checked, and only then opened for
    reading through /proc/self/fd/N: what is read is what was checked."""
    import stat

    if not (strict_modes if strict is None else strict) or path == "-":
        return read_bounded(path, limit)
    try:
        path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileAccessError("no such file", file=path) from None
    except OSError as exc:
        raise FileAccessError(exc.strerror or str(exc), file=path) from None
    try:
        st = os.fstat(path_fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileAccessError("is a directory", file=path)
        problem = trust_problem(path, st)
        if problem:
            raise UntrustedPolicyError(
                f"not trusted as policy, {problem}; whoever can write it could make every VM "
                f"refuse to start (fix: chown root, chmod go-w, the file and its directories)",
                file=path)
        try:
            fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise FileAccessError(exc.strerror or str(exc), file=path) from None
    finally:
        os.close(path_fd)
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read(limit + 1)
        except OSError as exc:
            raise FileAccessError(exc.strerror or str(exc), file=path) from None
