"""Who may see and do what: the signed-in user's view, and references resolved for them.

Role, ownership and visibility are decided here (see
:mod:`portal.accounts.auth`), so the UI, the CLI and the API cannot differ.
Resolved references are cached for ``ref_ttl_seconds``, shared by every view.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Self

from ..accounts.auth import User, require
from ..errors import NotFoundError, PermissionDeniedError, PortalError
from ..storage.refs import ModelRef
from ..storage.registry import ModelSummary, ModelVersion
from .state import PortalState

__all__ = ["Access"]


class Access(PortalState):
    """Views for one user, the checks of their role, and reference lookup."""

    _refs: dict[str, tuple[float, ModelVersion]]
    _refs_lock: threading.Lock

    def as_user(self, user: User | None, *, source: str | None = None) -> Self:
        """This portal acting for ``user`` (None: the unrestricted local operator).

        The view shares everything with this portal; ``source`` (ui, cli, api)
        labels its predictions in the log.
        """
        view = copy.copy(self)
        view.user = user
        view.actor = user.name if user is not None else self.actor
        if source is not None:
            view.source = source
        return view

    def can(self, action: str, model: ModelVersion | ModelSummary | None = None) -> bool:
        """Whether the current user may do ``action`` (on ``model``): for pages to hide what is refused."""
        try:
            self.check(action, model)
        except PortalError:
            return False
        return True

    def check(self, action: str, model: ModelVersion | ModelSummary | None = None) -> None:
        """Raise unless the current user may do ``action`` (on ``model``).

        Raises:
            NotFoundError: ``model`` is private to someone else (it is not even listed).
            PermissionDeniedError: the role, or ownership of ``model``, does not allow it.
        """
        user = self.user
        if user is None:
            return
        if model is not None and not self._visible(model):
            raise NotFoundError(f"no model named {model.name!r}; `portal list` shows the registered models")
        if model is None:
            require(user, action)
        else:
            require(user, action, model_owner=model.owner, model_owner_id=model.owner_id)

    def _visible(self, model: ModelVersion | ModelSummary) -> bool:
        # by user id, never by name: a user deleted and re-created under the same name owns nothing of the old one's
        user = self.user
        return (
            user is None or user.role == "admin" or model.visibility != "private"
            or (model.owner_id is not None and model.owner_id == user.id)
        )

    def _check_visible(self, model: ModelVersion | ModelSummary) -> None:
        if not self._visible(model):
            raise NotFoundError(f"no model named {model.name!r}; `portal list` shows the registered models")

    def check_upload_to(self, name: str | None) -> None:
        """Refuse an upload to ``name`` the user may not add to; a name they cannot see is "taken".

        Names are one namespace (SECURITY.md): whether a name exists is visible to anyone who
        may upload, nothing else about it; every door gives this same answer.
        """
        existing = self.find_model(name) if name else None
        if existing is not None and not self._visible(existing):
            self.check("upload")  # a viewer learns nothing: the role is refused first
            raise PermissionDeniedError(f"the name {name!r} is taken; pick another name")
        self.check("upload", existing)

    def find_model(self, name: str) -> ModelSummary | None:
        """The model ``name`` (unfiltered by visibility), or None: for checks before an upload."""
        try:
            return self.registry.get_model(name)
        except NotFoundError:
            return None

    # -- lookup -------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget resolved references after the registry changed (a new version, a moved alias)."""
        with self._refs_lock:
            self._refs.clear()

    def get(self, ref: str | ModelRef | ModelVersion) -> ModelVersion:
        """The version ``ref`` points at (cached for ``ref_ttl_seconds``).

        A ``ModelVersion`` already resolved is returned as it is, once the current
        user is checked to see it.
        """
        if isinstance(ref, ModelVersion):
            version = ref
            if self.user is not None:
                self._check_visible(version)
            return version
        key = str(ref)
        now = time.monotonic()
        hit = self._refs.get(key)
        if hit is not None and hit[0] > now:
            version = hit[1]
        else:
            version = self.registry.resolve(ref)
            with self._refs_lock:
                self._refs[key] = (now + self.settings.ref_ttl_seconds, version)
        if self.user is not None:
            self._check_visible(version)
        return version

    def list_models(self) -> list[ModelSummary]:
        """The models the current user may see."""
        models = self.registry.list_models()
        return models if self.user is None else [m for m in models if self._visible(m)]

    def get_model(self, name: str) -> ModelSummary:
        """The model ``name`` if the current user may see it."""
        summary = self.registry.get_model(name)
        if self.user is not None:
            self._check_visible(summary)
        return summary
