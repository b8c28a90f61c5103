"""File actions confined to the configured file root (external handlers: the effect is on disk).

Every path parameter is relative to ``HandlerSettings.file_root``. Absolute paths, ``..`` components and paths
that resolve outside the root through a symlink are refused with ``PathOutsideRoot`` before anything is
touched; existing files are never overwritten unless the action says so (``FileConflict``). Both handlers
recognise their own completed effect (same content hash at the destination, source gone), so a run retried
after a crash does not fail or apply twice. A check-then-act race with another process writing inside the
root is not prevented: the root is assumed to be ours.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from saferails.actions.types import CreateDocumentParams, MoveFileParams
from saferails.errors import InvalidParams
from saferails.handlers.base import (
    APPLIED,
    NOT_APPLIED,
    UNKNOWN,
    ExecutionOutcome,
    FileConflict,
    HandlerContext,
    PathOutsideRoot,
    Reconciliation,
    RollbackConflict,
    parse_params,
)


def resolve_inside(ctx: HandlerContext, relative: str, field: str) -> Path:
    """``relative`` under the file root, or ``PathOutsideRoot``. Symlinks are followed before the check."""
    root = ctx.settings.require_file_root().resolve()
    if not isinstance(relative, str) or "\x00" in relative or "\\" in relative:
        raise PathOutsideRoot(f"{field} {relative!r} is not a plain relative path", field=field)
    pure = PurePosixPath(relative)
    if pure.is_absolute() or Path(relative).is_absolute() or ".." in pure.parts:
        raise PathOutsideRoot(f"{field} {relative!r} must be a relative path without '..'", field=field)
    candidate = root.joinpath(*pure.parts)
    if not candidate.resolve().is_relative_to(root):
        raise PathOutsideRoot(f"{field} {relative!r} resolves outside the file root", field=field)
    return candidate


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".saferails-")
    try:
        if path.exists():
            shutil.copymode(path, tmp)  # the replaced file keeps its permissions
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _move_no_overwrite(source: Path, destination: Path) -> None:
    """Move without ever replacing ``destination``: a hard link fails if it exists (atomic check)."""
    try:
        os.link(source, destination)
    except FileExistsError:
        raise FileConflict(f"{destination.name} appeared at the destination", path=str(destination)) from None
    except OSError:
        # No hard links here (another device, a filesystem without them): check, then rename.
        if destination.exists() or destination.is_symlink():
            raise FileConflict(f"{destination.name} appeared at the destination", path=str(destination)) from None
        os.rename(source, destination)
        return
    source.unlink()


class MoveFileHandler:
    action_type = "move_file"
    external = True

    def _paths(self, ctx: HandlerContext, params: dict[str, Any]) -> tuple[Path, Path]:
        p = parse_params(self.action_type, MoveFileParams, params)
        return resolve_inside(ctx, p.source, "source"), resolve_inside(ctx, p.destination, "destination")

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        source, destination = self._paths(ctx, params)
        if source.is_symlink() or not source.is_file():
            raise InvalidParams(self.action_type, [f"source: {params['source']!r} is not a regular file"])
        if destination.exists() or destination.is_symlink():
            raise FileConflict(f"destination {params['destination']!r} exists", path=params["destination"])
        if not destination.parent.is_dir():
            raise InvalidParams(self.action_type, [f"destination: folder of {params['destination']!r} is missing"])

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        source, _ = self._paths(ctx, params)
        return {
            "source": params["source"],
            "destination": params["destination"],
            "sha256": sha256_of(source),
            "size": source.stat().st_size,
        }

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        return {"summary": f"move {params['source']} -> {params['destination']} ({pre_state['size']} bytes)"}

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        source, destination = self._paths(ctx, params)
        result = {"source": params["source"], "destination": params["destination"], "sha256": pre_state["sha256"]}
        already = not source.exists() and destination.is_file() and sha256_of(destination) == pre_state["sha256"]
        if not already:
            _move_no_overwrite(source, destination)
        return ExecutionOutcome(result=result, rollback_data=dict(result))

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        """Applied: the source is gone and the destination holds the captured content. Not applied: the
        source still holds it and the destination is absent. Anything else (both present after an interrupted
        link-then-unlink, or changed content) is unknown."""
        source, destination = self._paths(ctx, params)
        sha = pre_state.get("sha256")
        dest_is_ours = destination.is_file() and not destination.is_symlink() and sha256_of(destination) == sha
        source_is_ours = source.is_file() and not source.is_symlink() and sha256_of(source) == sha
        if dest_is_ours and not source.exists():
            data = {"source": params["source"], "destination": params["destination"], "sha256": sha}
            return Reconciliation(APPLIED, "the file is at the destination", dict(data), data)
        if source_is_ours and not (destination.exists() or destination.is_symlink()):
            return Reconciliation(NOT_APPLIED, "the file is still at the source")
        return Reconciliation(UNKNOWN, "source and destination do not match either side of the move")

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        source = resolve_inside(ctx, rollback_data["source"], "source")
        destination = resolve_inside(ctx, rollback_data["destination"], "destination")
        if source.exists() or not destination.is_file() or sha256_of(destination) != rollback_data["sha256"]:
            raise RollbackConflict(
                f"cannot move {rollback_data['destination']} back: it changed or {rollback_data['source']} exists"
            )
        _move_no_overwrite(destination, source)
        return {"restored": rollback_data["source"]}


class CreateDocumentHandler:
    """Write a UTF-8 document. With ``overwrite`` the previous content is captured and restored on rollback;
    without, rollback deletes the document (only if it still holds what the action wrote)."""

    action_type = "create_document"
    external = True

    def _path(self, ctx: HandlerContext, params: dict[str, Any]) -> tuple[Path, CreateDocumentParams]:
        p = parse_params(self.action_type, CreateDocumentParams, params)
        return resolve_inside(ctx, p.path, "path"), p

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        path, p = self._path(ctx, params)
        if not path.parent.is_dir():
            raise InvalidParams(self.action_type, [f"path: folder of {p.path!r} is missing"])
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise InvalidParams(self.action_type, [f"path: {p.path!r} is not a regular file"])
        if path.exists() and not p.overwrite:
            raise FileConflict(f"{p.path!r} exists and overwrite is false", path=p.path)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        path, p = self._path(ctx, params)
        if not path.exists():
            return {"path": p.path, "existed": False}
        try:
            previous = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problem = f"path: {p.path!r} is not UTF-8 text; refusing to overwrite"
            raise InvalidParams(self.action_type, [problem]) from None
        return {"path": p.path, "existed": True, "previous_content": previous, "sha256": sha256_of(path)}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        verb = "overwrite" if pre_state["existed"] else "create"
        return {"summary": f"{verb} {params['path']} ({len(params['content'])} characters)"}

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        path, p = self._path(ctx, params)
        written = hashlib.sha256(p.content.encode("utf-8")).hexdigest()
        already = path.is_file() and sha256_of(path) == written
        if not already and pre_state["existed"]:
            if not path.is_file() or sha256_of(path) != pre_state["sha256"]:
                raise FileConflict(f"{p.path!r} changed since it was captured", path=p.path)
            _write_atomically(path, p.content)
        elif not already:
            try:
                with path.open("x", encoding="utf-8") as fh:
                    fh.write(p.content)
            except FileExistsError:
                raise FileConflict(f"{p.path!r} appeared before it could be created", path=p.path) from None
        rollback = {"path": p.path, "sha256": written, "existed": pre_state["existed"]}
        if pre_state["existed"]:
            rollback["previous_content"] = pre_state["previous_content"]
        return ExecutionOutcome(
            result={"path": p.path, "sha256": written, "overwrote": pre_state["existed"]}, rollback_data=rollback
        )

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        """Applied: the document holds exactly the content the action writes (and did not already before).
        Not applied: the path is still as captured (absent, or the previous content). Otherwise unknown."""
        path, p = self._path(ctx, params)
        written = hashlib.sha256(p.content.encode("utf-8")).hexdigest()
        existed = bool(pre_state.get("existed"))
        current = sha256_of(path) if path.is_file() and not path.is_symlink() else None
        if existed and pre_state.get("sha256") == written:
            return Reconciliation(NOT_APPLIED, "the document already held this content before the action")
        if current == written:
            data: dict[str, Any] = {"path": p.path, "sha256": written, "existed": existed}
            if existed:
                data["previous_content"] = pre_state["previous_content"]
            result = {"path": p.path, "sha256": written, "overwrote": existed}
            return Reconciliation(APPLIED, "the document holds the content the action writes", result, data)
        if (not existed and not path.exists() and not path.is_symlink()) or (
            existed and current is not None and current == pre_state.get("sha256")
        ):
            return Reconciliation(NOT_APPLIED, "the path is as it was captured")
        return Reconciliation(UNKNOWN, "the document changed since it was captured")

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        path = resolve_inside(ctx, rollback_data["path"], "path")
        if not path.is_file() or sha256_of(path) != rollback_data["sha256"]:
            raise RollbackConflict(f"{rollback_data['path']} changed since the action wrote it")
        if rollback_data["existed"]:
            _write_atomically(path, rollback_data["previous_content"])
            return {"path": rollback_data["path"], "restored": True}
        path.unlink()
        return {"path": rollback_data["path"], "deleted": True}
