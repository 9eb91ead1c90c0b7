"""Pages of the worklist, fetched one at a time with the store's keyset paging.

The store pages in SQL (``worklist(limit=, after=)``: the page after a given case, in
creation order), so a page costs the same at 100 cases or 100,000 and Streamlit's rerun on
every click loads one page, never every case. Going back needs the start of each page
seen: the pager keeps that stack in the session and starts again on page 1 whenever the
filters change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review import CaseInfo, ReviewStore, UserInfo

PAGE_SIZE = 50


def _state(key: str) -> dict[str, Any]:
    return st.session_state.setdefault(f"{key}_pager", {"filters": None, "starts": [None]})


def _next(key: str, last_case: str) -> None:
    _state(key)["starts"].append(last_case)


def _previous(key: str) -> None:
    starts = _state(key)["starts"]
    if len(starts) > 1:
        starts.pop()


def page_of_cases(
    store: ReviewStore,
    user: UserInfo,
    *,
    key: str,
    page_size: int = PAGE_SIZE,
    **filters: Any,
) -> tuple[list[CaseInfo], int, bool]:
    """One page of the worklist as ``user`` may see it.

    Args:
        store: the review store.
        user: the signed-in user.
        key: a name for this pager's state (one per page that shows a list).
        page_size: cases per page.
        **filters: :meth:`ReviewStore.worklist` filters (status, since, model...).

    Returns:
        The cases of the current page, its number (1-based), and whether a next page exists.

    Raises:
        medtl.review.ReviewStoreError: the store refused the filters.
    """
    from medtl.review import ReviewInputError

    state = _state(key)
    signature = repr(sorted(filters.items()))
    if state["filters"] != signature:
        state["filters"], state["starts"] = signature, [None]
    try:
        rows = store.worklist(user, limit=page_size + 1, after=state["starts"][-1], **filters)
    except ReviewInputError:
        if state["starts"] == [None]:
            raise
        state["starts"] = [None]  # the page's first case is gone: start again
        rows = store.worklist(user, limit=page_size + 1, **filters)
    return rows[:page_size], len(state["starts"]), len(rows) > page_size


def pager(
    key: str,
    cases: list[CaseInfo],
    page: int,
    has_next: bool,
    *,
    noun: str = "page",
    page_size: int = PAGE_SIZE,
) -> None:
    """Previous / next buttons and the position, under a page from :func:`page_of_cases`."""
    size = len(cases)
    first = (page - 1) * page_size + 1  # every earlier page was full
    left, middle, right = st.columns([1, 2, 1])
    left.button(
        f"Previous {noun}",
        key=f"{key}_prev",
        disabled=page <= 1,
        on_click=_previous,
        args=(key,),
    )
    middle.caption(f"Page {page}" + (f" · cases {first}-{first + size - 1}" if size else ""))
    right.button(
        f"Next {noun}",
        key=f"{key}_next",
        disabled=not has_next or not cases,
        on_click=_next,
        args=(key, cases[-1].case_id if cases else ""),
    )
