"""Applying the action table to a dataset, attribute by attribute and in every sequence item.

Which action an attribute gets (:func:`action_for`), in order:

1. private tags, curve (50xx) and overlay (60xx) groups, public tags unknown to pydicom's
   dictionary, and command/file-meta/directory groups: removed;
2. attributes of Table E.1-1 (:func:`medtl.io.deid_tables.profile_table`): the table's
   Basic Profile action (combined codes resolved by ``COMBINED_CHOICE``), or medtl's
   stricter choice in ``STRICTER_THAN_TABLE``; the patient characteristics kept under
   option 113108 are kept;
3. attributes medtl handles beyond the table (``BEYOND_TABLE``);
4. safety nets for everything else: person names emptied, dates and times removed, UIDs
   that are not class/syntax UIDs replaced, descriptive free text cleaned
   (:mod:`medtl.io.deid_clean`, unless the site opted out); the rest kept, sequences
   cleaned recursively.

Then, for a top-level attribute that the object's IOD requires (:mod:`medtl.io.deid_iod`),
a removal becomes a dummy value (Type 1/1C) or an empty value (Type 2/2C), and an empty
value of a Type 1 attribute becomes a dummy (:func:`conformant_action`): the object stays
valid for its IOD, as PS3.15 E.1.1 asks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from medtl.io.deid_clean import FREE_TEXT_VRS, KEPT_TEXT, clean_text, clean_values
from medtl.io.deid_iod import removal_for
from medtl.io.deid_keys import pseudonym, pseudonymous_uid
from medtl.io.deid_tables import (
    BEYOND_TABLE,
    DUMMY_BY_VR,
    KEPT_UIDS,
    RETAINED_PATIENT_CHARACTERISTICS,
    STRICTER_THAN_TABLE,
    profile_table,
    resolve_basic,
)

_DICOM_ROOT = "1.2.840.10008."
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE_TIME_VRS = frozenset({"DA", "DT", "TM"})


def plausible_uid(value: Any) -> bool:
    """True for a syntactically valid UID of at most 64 characters."""
    text = str(value or "").strip("\x00 ")
    return 0 < len(text) <= 64 and bool(_UID_RE.match(text))


class Context:
    """Settings and counters of one :func:`medtl.io.deidentify` call."""

    def __init__(
        self,
        key: bytes,
        *,
        remap: bool,
        retain: bool,
        clean_free_text: bool,
        required: Mapping[str, str] | None = None,
    ) -> None:
        self.key = key
        self.remap = remap
        self.retain = retain
        self.clean_free_text = clean_free_text
        self.required: Mapping[str, str] = required or {}
        self.removed = 0
        self.replaced_uids = 0
        self.cleaned = 0

    def uid(self, value: str) -> str:
        """The pseudonymous UID for ``value`` (registry UIDs and, when not remapping, all
        valid UIDs are kept)."""
        text = str(value).strip("\x00 ")
        if not text:
            return text
        if plausible_uid(text) and (text.startswith(_DICOM_ROOT) or not self.remap):
            return text
        self.replaced_uids += 1  # junk is hashed too, so no invalid value is re-assigned
        return pseudonymous_uid(text, key=self.key)


def table_action(tag: int, keyword: str) -> str | None:
    """medtl's action for an attribute of Table E.1-1 or of ``BEYOND_TABLE`` (else None).

    Args:
        tag: the attribute's tag as an int.
        keyword: its keyword (pydicom's).

    Returns:
        One of ``X``, ``Z``, ``D``, ``K``, ``U``, or None for attributes outside both.
    """
    if keyword in STRICTER_THAN_TABLE:
        return STRICTER_THAN_TABLE[keyword]
    code = profile_table().basic_action(tag)
    if code is not None:
        return resolve_basic(code)
    return BEYOND_TABLE.get(keyword)


def default_action(elem: Any, keyword: str, ctx: Context) -> str:
    """Action for attributes outside the table: the safety nets of the module docstring."""
    vr = elem.VR
    if vr == "SQ":
        return "K"
    if vr == "UI":
        return "K" if keyword in KEPT_UIDS else "U"
    if vr == "PN":
        return "Z"
    if vr in _DATE_TIME_VRS:
        return "X"
    if ctx.clean_free_text and vr in FREE_TEXT_VRS and keyword not in KEPT_TEXT:
        return "C"
    return "K"


def action_for(ds: Dataset, tag: BaseTag, ctx: Context, *, top: bool) -> str | None:
    """The action for ``ds[tag]``; None when :func:`medtl.io.deidentify` sets it itself."""
    group = tag.group
    if tag.is_private or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
        return "X"
    keyword = keyword_for_tag(tag)
    if not keyword or group < 0x0008:
        # a public tag no dictionary knows cannot be judged, and command (0000),
        # file meta (0002) and directory (0004) groups do not belong in a dataset body
        return "X"
    if keyword == "PatientID" and not top:
        return "P"  # a PatientID inside a sequence item: the keyed pseudonym
    if top and keyword in ("PatientID", "PatientName"):
        return None  # replaced by the pseudonym in deidentify()
    if top and ctx.retain and keyword in RETAINED_PATIENT_CHARACTERISTICS:
        return "K"
    action = table_action(int(tag), keyword)
    return action if action is not None else default_action(ds[tag], keyword, ctx)


def conformant_action(action: str, kind: str | None) -> str:
    """``action`` adjusted to the attribute's type ``kind`` in the IOD (see the module doc).

    Args:
        action: the action chosen by :func:`action_for`.
        kind: ``"1"``, ``"1C"``, ``"2"``, ``"2C"``, or None (Type 3 / not in the IOD).

    Returns:
        ``X`` becomes ``D`` or ``Z`` for a required attribute, ``Z`` becomes ``D`` for a
        Type 1 one; anything else is returned unchanged.
    """
    if action == "X":
        return removal_for(kind)
    if action == "Z" and removal_for(kind) == "D":
        return "D"
    return action


def _dummy(elem: Any) -> Any:
    return DUMMY_BY_VR.get(elem.VR, elem.empty_value)


def _map_uid_element(elem: Any, ctx: Context) -> None:
    if elem.VM == 0 or elem.value is None:
        return
    if elem.VM > 1:
        elem.value = [ctx.uid(v) for v in elem.value]
    else:
        elem.value = ctx.uid(elem.value)


def _clean_items(elem: Any, ctx: Context) -> None:
    for item in elem.value or []:
        clean_dataset(item, ctx, top=False)


def _clean_free_text(ds: Dataset, tag: BaseTag, ctx: Context, kind: str | None) -> None:
    elem = ds[tag]
    value = elem.value
    if value is None or value == "":
        return
    if isinstance(value, str):
        cleaned: Any = clean_text(value)
    elif isinstance(value, bytes | bytearray):
        cleaned = ""  # undecodable text cannot be judged
    else:
        cleaned = clean_values(str(v) for v in value)
    if cleaned != value:
        ctx.cleaned += 1
    if cleaned in ("", []):  # nothing safe left: removed, or kept empty/dummy if required
        replacement = removal_for(kind)
        if replacement == "X":
            del ds[tag]
            ctx.removed += 1
        else:
            elem.value = _dummy(elem) if replacement == "D" else elem.empty_value
    else:
        elem.value = cleaned


def apply_action(
    ds: Dataset, tag: BaseTag, action: str, ctx: Context, kind: str | None = None
) -> None:
    """Apply one action code to ``ds[tag]`` (``P``: keyed pseudonym; ``C``: clean text).

    Args:
        ds: the dataset holding the attribute.
        tag: its tag.
        action: ``X``, ``Z``, ``D``, ``U``, ``C``, ``P`` or ``K``.
        ctx: the call's settings and counters.
        kind: the attribute's type in the IOD (for ``C``: what an emptied value becomes).
    """
    elem = ds[tag]
    if action == "X":
        del ds[tag]
        ctx.removed += 1
    elif action == "Z":
        elem.value = [] if elem.VR == "SQ" else elem.empty_value
    elif action == "D":
        if elem.VR == "SQ":
            _clean_items(elem, ctx)
        elif elem.VR == "UI":
            _map_uid_element(elem, ctx)
        else:
            elem.value = _dummy(elem)
    elif action == "U":
        if elem.VR == "UI":
            _map_uid_element(elem, ctx)
        elif elem.VR == "SQ":
            _clean_items(elem, ctx)
        else:  # a UID stored under another VR: never keep it
            elem.value = elem.empty_value
    elif action == "C":
        _clean_free_text(ds, tag, ctx, kind)
    elif action == "P":
        if ctx.remap and str(elem.value or "").strip():
            elem.value = pseudonym(str(elem.value), key=ctx.key)
    elif action == "K" and elem.VR == "SQ":
        _clean_items(elem, ctx)


def required_type(tag: BaseTag, ctx: Context, *, top: bool) -> str | None:
    """The type of a top-level attribute in the object's IOD (None inside sequences, for
    Type 3 attributes and for private/repeating-group tags)."""
    if not top or tag.is_private:
        return None
    keyword = keyword_for_tag(tag)
    return ctx.required.get(keyword) if keyword else None


def clean_dataset(ds: Dataset, ctx: Context, *, top: bool) -> None:
    """Apply :func:`action_for` to every element of ``ds``, recursively in sequences
    (at the top level adjusted by :func:`conformant_action` to the IOD's types)."""
    for tag in list(ds.keys()):
        action = action_for(ds, tag, ctx, top=top)
        if action is not None:
            kind = required_type(tag, ctx, top=top)
            apply_action(ds, tag, conformant_action(action, kind), ctx, kind)
