"""Worklist and case review page through a few hundred cases with the store's keyset
paging (limit/after): next and previous pages, and the open case survives paging."""

from __future__ import annotations

import pytest

from medtl.io import load_scan
from medtl.review import ReviewStore

from .helpers import dicom_bytes, new_app, page_text, sign_in

N_CASES = 230  # 4 full pages of 50 and one of 30


@pytest.fixture
def many_cases(app_home) -> list[str]:
    scan = load_scan(dicom_bytes(seed=40))
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        for _ in range(N_CASES):
            store.create_case(alice, scan)
        return [c.case_id for c in store.worklist(None)]  # oldest first


def _table_cases(at) -> list[str]:
    return list(at.dataframe[0].value["Case"])


def test_worklist_pages_forward_and_back(many_cases) -> None:
    at = sign_in(new_app().run(), "rita")  # a researcher: the worklist is her first page
    assert [t.value for t in at.title] == ["Worklist"]
    assert _table_cases(at) == many_cases[:50]
    assert at.button(key="wl_prev").disabled and not at.button(key="wl_next").disabled
    assert "Page 1 · cases 1-50" in page_text(at)
    at.button(key="wl_next").click().run()
    assert _table_cases(at) == many_cases[50:100]
    assert at.selectbox(key="wl_open_choice").options == many_cases[50:100]
    for _ in range(3):
        at.button(key="wl_next").click().run()
    assert _table_cases(at) == many_cases[200:]
    assert "Page 5 · cases 201-230" in page_text(at)
    assert at.button(key="wl_next").disabled
    at.button(key="wl_prev").click().run()
    assert _table_cases(at) == many_cases[150:200]
    # Changing a filter starts again on page 1.
    at.multiselect(key="wl_status").set_value(["new"]).run()
    assert _table_cases(at) == many_cases[:50]
    assert at.button(key="wl_prev").disabled


def test_case_dropdown_pages_and_keeps_the_open_case(many_cases) -> None:
    at = sign_in(new_app().run(), "alice")
    at.switch_page("pages/case_review.py").run()
    box = at.selectbox(key="cr_case")
    assert box.options == many_cases[:50] and box.value == many_cases[0]
    box.set_value(many_cases[7]).run()  # the first change of the dropdown holds
    assert at.selectbox(key="cr_case").value == many_cases[7]
    at.button(key="cr_next").click().run()
    box = at.selectbox(key="cr_case")
    assert box.value == many_cases[7]  # still the open case...
    assert box.options == [*many_cases[50:100], many_cases[7]]  # ...listed after the page
    assert f"Case **{many_cases[7]}**" in page_text(at)
    box.set_value(many_cases[60]).run()
    at.button(key="cr_prev").click().run()
    box = at.selectbox(key="cr_case")
    assert box.value == many_cases[60] and box.options == [*many_cases[:50], many_cases[60]]
