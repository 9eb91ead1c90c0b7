"""The upload page suggests a model that fits the scan, and offers CT windows for CT only
(issue 13, point 9: a real chest CR opened with the MRI-to-CT model preselected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import analyse, dicom_bytes, errors, make_package, new_app, page_text, sign_in, upload


@pytest.fixture
def two_models(app_home: Path, tmp_path: Path):
    """tinycxr (chest radiographs) and, listed after it, a 2D CT model."""
    from medtl.transfer.presets import default_preprocessing

    make_package(
        tmp_path / "ctpkg",
        name="zz_ct_nodule",
        preprocessing=default_preprocessing("ct", [64, 64]).model_dump(mode="json"),
        target_domain="CT chest",
    )
    return sign_in(new_app().run(), "alice")


def test_a_radiograph_defaults_to_the_radiograph_model(two_models) -> None:
    at = upload(two_models, dicom_bytes(seed=30, modality="CR"))
    box = at.selectbox(key="model_choice")
    assert box.options == ["tinycxr@1.0.0", "zz_ct_nodule@1.0.0"]  # the CT model is last
    assert box.value == "tinycxr@1.0.0"
    analyse(at)
    assert errors(at) == [] and at.metric[0].label == "Probability of nodule"

    box.set_value("zz_ct_nodule@1.0.0").run()  # the clinician's own choice is kept...
    assert at.selectbox(key="model_choice").value == "zz_ct_nodule@1.0.0"
    assert "This CR scan does not suit zz_ct_nodule@1.0.0" in page_text(at)  # ...with a note


def test_a_ct_image_defaults_to_the_ct_model_and_a_new_scan_suggests_again(two_models) -> None:
    at = upload(two_models, dicom_bytes(seed=31, modality="CT"))
    assert at.selectbox(key="model_choice").value == "zz_ct_nodule@1.0.0"
    at = upload(at, dicom_bytes(seed=32, modality="CR"), name="next.dcm")
    assert at.selectbox(key="model_choice").value == "tinycxr@1.0.0"


def test_window_presets_follow_the_modality(app_home) -> None:
    at = sign_in(new_app().run(), "alice")
    at = upload(at, dicom_bytes(seed=33, modality="CR"))
    assert not at.exception
    assert [b.key for b in at.selectbox if b.key == "upload_viewer_preset"] == []
    assert "Lung" not in page_text(at) and "Mediastinum" not in page_text(at)
    at = upload(at, dicom_bytes(seed=34, modality="CT"), name="ct.dcm")
    preset = at.selectbox(key="upload_viewer_preset")
    assert preset.options == ["Auto (file)", "Lung", "Mediastinum", "Bone", "Brain"]
