"""Why a page hides or disables an action: one short sentence per refusal.

The library decides (``portal.can``); this module only words the reason, so a
page can say "only the owner (ana) or an admin can delete this model" next to
a disabled button.  The library still refuses if a page is bypassed.
"""

from __future__ import annotations

from ..core import Portal
from ..storage.registry import ModelSummary, ModelVersion

__all__ = ["why_not"]

_VERBS = {
    "upload": ("upload models", "add versions or variants to this model"),
    "edit": ("edit models", "edit this model"),
    "alias": ("move aliases", "move this model's aliases"),
    "delete": ("delete models", "delete this model"),
    "admin": ("manage users and tokens", "manage users and tokens"),
    "variants": ("create variants", "create variants of this model"),
}
# actions worded here that the library checks as another: a variant is a new version of the model
_CHECKED_AS = {"variants": "upload"}


def why_not(portal: Portal, action: str, model: ModelSummary | ModelVersion | None = None) -> str | None:
    """None if the current user may do ``action`` (on ``model``); otherwise why not, as one sentence."""
    if portal.can(_CHECKED_AS.get(action, action), model):
        return None
    user = portal.user
    general, specific = _VERBS.get(action, (action, action))
    if user is None or user.role == "admin":  # only a hidden model refuses an admin
        return f"You cannot {specific}."
    if user.role == "viewer" or action == "admin":
        role = "admin" if action in ("admin",) else "analyst"
        return f"{user.role.capitalize()}s cannot {general}; ask an admin for the {role} role."
    owner = model.owner if model is not None else ""
    return f"Only the owner ({owner or 'nobody'}) or an admin can {specific}."
