"""What a store URL points at, found without creating or changing anything.

The MLflow tracking store and the Optuna storage are both databases (or files); pointed at
each other's file, either tool would add its tables to the other's. ``store_kind`` reads the
table names (read-only) and says which tool owns a database; ``file_of`` names the local
file behind a URL, so that commands can refuse an output path that is one of their stores.
Neither MLflow nor Optuna is imported here.
"""
from __future__ import annotations

import os
import re
import sqlite3
from urllib.parse import urlsplit

# Tables only one of the tools creates.
_MLFLOW_TABLES = {"experiments", "runs", "metrics", "params", "tags"}
_OPTUNA_TABLES = {"studies", "trials", "trial_values", "trial_params", "version_info"}
CONNECT_TIMEOUT_S = 5


class StoreError(ValueError):
    """A store that is missing, unreachable, or belongs to the other tool; one line."""


def redact(url: str | None) -> str | None:
    """Hide the password in scheme://user:password@host URLs (and ?password=... queries)."""
    if not url:
        return url
    text = re.sub(r"(://[^/:@\s]*):[^@/\s]*@", r"\1:***@", str(url))
    return re.sub(r"((?:password|passwd)=)[^&\s]*", r"\1***", text, flags=re.IGNORECASE)


def sqlite_path(url: str | None) -> str | None:
    """The file of a ``sqlite:///file`` URL (None for other URLs or an in-memory database)."""
    if not url or not url.startswith("sqlite:"):
        return None
    path = re.sub(r"^sqlite(\+\w+)?:///", "", url).split("?", 1)[0]
    return None if path in ("", ":memory:") or url.startswith("sqlite://:") else path


def file_of(url: str | None) -> str | None:
    """The local file a store URL reads and writes (sqlite or journal), else None."""
    if not url:
        return None
    if url.startswith("journal:"):
        return url[len("journal:"):]
    if url.startswith("file:"):
        return urlsplit(url).path or None
    return sqlite_path(url)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (the same after resolving links, or the same inode)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _tables_sqlite(path: str) -> set[str]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT_S)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"{path} is not a SQLite database ({e})") from None
    return {r[0] for r in rows}


def _tables_rdb(url: str) -> set[str]:
    import sqlalchemy
    args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith(("postgres", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    except ModuleNotFoundError as e:
        raise StoreError(f"{redact(url)} needs the database driver {e.name}: "
                         f"pip install 'autoaug[postgres]' (psycopg2-binary)") from None
    except Exception as e:  # a URL SQLAlchemy cannot parse or has no dialect for
        raise StoreError(f"cannot use {redact(url)}: {redact(_first_line(e))}") from None
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    except Exception as e:
        raise StoreError(f"cannot reach database {redact(url)} (tried for {CONNECT_TIMEOUT_S} s): "
                         f"{redact(_first_line(e))}") from None
    finally:
        engine.dispose()


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def with_driver(url: str) -> str:
    """`postgresql://` names no driver; SQLAlchemy 2.1 then wants psycopg 3: use what is installed."""
    import importlib.util
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and not importlib.util.find_spec("psycopg"):
        if not importlib.util.find_spec("psycopg2"):
            raise StoreError("a PostgreSQL store needs a driver: pip install 'autoaug[postgres]' "
                             "(psycopg2-binary)")
        return f"postgresql+psycopg2{sep}{rest}"
    return url


def store_kind(url: str) -> str:
    """``missing`` (no such file yet), ``empty`` (no tables), ``mlflow``, ``optuna`` or ``other``.

    Reads table names only; never creates a file or a table. Raises StoreError for a file that
    is no database or a database that cannot be reached (within a few seconds).
    """
    journal = url.startswith("journal:")
    path = file_of(url)
    if path is not None:
        if not os.path.exists(path):
            return "missing"
        if os.path.isdir(path):
            raise StoreError(f"{path} is a folder, not a store file")
        if os.path.getsize(path) == 0:
            return "empty"
        if journal:
            with open(path, "rb") as f:
                head = f.read(16)
            if head.startswith(b"SQLite format 3"):
                return _kind(_tables_sqlite(path))
            return "optuna" if head.lstrip().startswith(b"{") else "other"
        if url.startswith("file:"):
            return "other"
        return _kind(_tables_sqlite(path))
    if "://" not in url or url.startswith(("http://", "https://", "databricks")):
        return "server"
    return _kind(_tables_rdb(with_driver(url)))


def _kind(tables: set[str]) -> str:
    if not tables:
        return "empty"
    if _OPTUNA_TABLES & tables and not {"experiments", "runs"} <= tables:
        return "optuna"
    if {"experiments", "runs"} <= tables and not {"studies", "trials"} <= tables:
        return "mlflow"
    return "other"


def check_kind(url: str, want: str, flag: str, *, must_exist: bool = False) -> str:
    """Refuse a store of the other tool (``want``: mlflow | optuna), or of neither, or (with
    ``must_exist``) a missing one; the kind found."""
    kind = store_kind(url)
    other = {"mlflow": "Optuna", "optuna": "MLflow"}[want]
    label = {"mlflow": "MLflow tracking store", "optuna": "Optuna storage"}[want]
    if kind == "missing" and must_exist:
        raise StoreError(f"{label} {redact(url)} does not exist; check {flag}")
    if kind in (other.lower(), "other"):
        whose = f"an {other} database" if kind != "other" else "a database of another program"
        raise StoreError(f"{flag} {redact(url)} is {whose}, not an {label}; "
                         f"give {flag} a store of its own")
    return kind
