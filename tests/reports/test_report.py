"""The validation report: sections, embedded figures, JSON schema, PDF, checklist, red flag."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import jsonschema
import numpy as np
import pytest
from PIL import Image

from medtl.reports.schema import SECTION_IDS, ReportData, report_schema
from tests.reports.conftest import NEGATIVE_COMPARISON

PNG_PREFIX = "data:image/png;base64,"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and not attrs.get("href", "#").startswith("#")):
            self.links.append(tag)


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    return parser


def test_html_has_every_section_and_embedded_images(report_data, report_html) -> None:
    parsed = _parse(report_html)
    assert [i for i in parsed.ids if i in SECTION_IDS] == list(SECTION_IDS)
    # every image is an embedded PNG, nothing is fetched from elsewhere
    assert parsed.images and all(src.startswith(PNG_PREFIX) for src in parsed.images)
    assert parsed.links == []
    figures = report_data.figures()
    ids = {f.id for f in figures}
    assert {"roc", "pr", "reliability", "training-curves", "learning-curves"} <= ids
    assert len(parsed.images) == len(figures) == report_html.count(f'src="{PNG_PREFIX}')
    png = base64.b64decode(parsed.images[0][len(PNG_PREFIX) :])
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        assert im.format == "PNG" and im.width > 200 and im.height > 200
        # a plot, not a blank canvas
        assert len(set(np.asarray(im.convert("L")).ravel().tolist())) > 10


def test_report_content_is_true_to_the_run(report_data, tiny_run) -> None:
    evaluation = json.loads((tiny_run / "evaluation.json").read_text())
    summary = json.loads((tiny_run / "summary.json").read_text())
    auroc = next(r for r in report_data.metrics.rows if r.name == "AUROC").value
    assert auroc.estimate == pytest.approx(evaluation["test"]["auroc"]["estimate"])
    assert report_data.metrics.n_images == 8 and report_data.metrics.n_patients == 4
    assert [s.split for s in report_data.data.splits] == ["train", "val", "calibration", "test"]
    assert [s.n_patients for s in report_data.data.splits] == [24, 6, 6, 4]
    assert report_data.data.simulated and "synthetic squares" in report_data.data.description
    assert report_data.model.config_hash == summary["config_hash"]
    assert report_data.model.data_hash == summary["data_hash"]
    # full without model.weights: no starting weights, so the config's source text is not used
    assert report_data.model.source_domain is None
    assert report_data.model.source_stated_by == "no starting weights"
    env = summary["environment"]
    assert report_data.model.hardware.startswith(f"cpu, {env['threads']} CPU thread(s)")
    assert report_data.model.versions == env["versions"]
    chosen = evaluation["operating_points_chosen"]
    rows = {r.name: r for r in report_data.operating_points.rows}
    assert set(rows) == set(chosen)
    for name, row in rows.items():
        assert row.threshold == pytest.approx(chosen[name]["threshold"])
        assert row.chosen_on == "calibration"
    assert next(r.measure for r in report_data.calibration.table).startswith("ECE")
    assert {r.group for r in report_data.subgroups.rows} >= {"nodule size", "site"}
    assert any("SIMULATED DATA" in w for w in report_data.summary.warnings)
    # learning curves: 2 strategies x 3 fractions minus the scratch rows
    assert {(r.strategy, r.fraction) for r in report_data.transfer.learning_curves} == {
        ("full", 0.1),
        ("full", 0.5),
        ("full", 1.0),
    }
    assert report_data.transfer.transferability["smallcnn"] == {"logme": -0.61, "h_score": 0.8}
    names = [b["name"] for b in report_data.transfer.baselines]
    assert names[0].startswith("This network") and "Constant" in names


def test_failure_cases_carry_saliency_overlays(report_data) -> None:
    failures = report_data.failures
    assert failures.applicable and failures.threshold is not None
    kinds = {c.kind for c in failures.cases}
    assert kinds & {"false positive", "nearest negative"}
    assert kinds & {"false negative", "nearest positive"}
    for case in failures.cases:
        assert case.image is not None
        # a drawn overlay or an explicit "flat map" caption, never a silent omission
        assert case.saliency or "flat" in case.image.caption
        assert re.fullmatch(r"P\d{3}", case.patient)
        wrong = (case.probability >= case.threshold) != (case.label == "present")
        assert wrong == (case.kind in ("false positive", "false negative"))
    assert "Grad-CAM" in failures.saliency_method


def test_report_json_validates_against_schema(report_data, tmp_path) -> None:
    from medtl.reports.builder import write_report_json

    path = write_report_json(report_data, tmp_path / "report.json")
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, report_schema())
    assert ReportData.model_validate(doc) == report_data
    broken = dict(doc, task_type="regression")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, report_schema())
    missing = {k: v for k, v in doc.items() if k != "calibration"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, report_schema())


def test_checklist_flags_unknown_items_without_hiding_them(report_data, report_html) -> None:
    from medtl.reports.checklist import CHECKLIST_ITEMS, fill_checklist

    items = report_data.checklist
    assert len(items) == len(CHECKLIST_ITEMS)
    by_topic = {i.topic: i for i in items}
    assert by_topic["Ethical approval and informed consent (or waiver)"].status == "unknown"
    assert by_topic["Testing on external data"].status == "not reported"
    assert by_topic["Metrics of model performance"].status == "reported"
    reference = "Definition of method(s) used to obtain reference standard"
    assert by_topic[reference].status == "reported"
    unknown = sum(i.status == "unknown" for i in items)
    assert unknown >= 5
    assert report_html.count('class="badge unknown"') == unknown
    # real data: the reference standard is no longer known by construction
    real = report_data.model_copy(deep=True)
    real.data.simulated = False
    status = {i.topic: i.status for i in fill_checklist(real)}
    assert status[reference] == "unknown"
    assert status["Source of reference standard annotations"] == "unknown"


def test_negative_transfer_shows_a_red_flag(report_data, report_html) -> None:
    from medtl.reports.html import render_html
    from medtl.reports.sections import headline_summary

    assert report_data.transfer.negative_transfer
    assert 'id="negative-transfer"' in report_html
    assert "Red flag: negative transfer" in report_html
    assert any(w.startswith("NEGATIVE TRANSFER") for w in report_data.summary.warnings)
    flag = next(h for h in report_data.summary.headline if h.label == "Transfer vs scratch")
    assert flag.flag == "danger"
    positive = report_data.model_copy(deep=True)
    positive.transfer.comparison = dict(NEGATIVE_COMPARISON, verdict="positive transfer")
    positive.transfer.verdict = "positive transfer"
    positive.transfer.negative_transfer = False
    positive.summary = headline_summary(positive)
    html = render_html(positive)
    assert 'id="negative-transfer"' not in html and "Red flag" not in html


def test_pdf_has_pages(report_data, tmp_path) -> None:
    from medtl.reports.html import render_html
    from medtl.reports.pdf import PdfUnavailableError, count_pdf_pages, html_to_pdf

    try:
        path = html_to_pdf(render_html(report_data), tmp_path / "report.pdf")
    except PdfUnavailableError as err:  # pragma: no cover - WeasyPrint is in the dev venv
        pytest.skip(str(err))
    assert path.read_bytes()[:5] == b"%PDF-"
    assert count_pdf_pages(path) >= 5


def test_missing_weasyprint_names_what_to_install(monkeypatch, tmp_path) -> None:
    import sys

    from medtl.reports.pdf import PdfUnavailableError, html_to_pdf

    monkeypatch.setitem(sys.modules, "weasyprint", None)
    with pytest.raises(PdfUnavailableError, match="pip install weasyprint") as info:
        html_to_pdf("<html></html>", tmp_path / "x.pdf")
    assert "Pango" in str(info.value)
    assert not (tmp_path / "x.pdf").exists()


def test_page_count_reads_compressed_object_streams() -> None:
    import zlib

    from medtl.reports.pdf import count_page_objects

    body = b"1 0 obj <</Type /Page>> endobj 2 0 obj <</Type/Page /P 1>> endobj "
    body += b"3 0 obj <</Type /Pages /Count 2>> endobj"
    pdf = b"%PDF-1.7\n5 0 obj\n<</Type /ObjStm /Filter /FlateDecode>>\nstream\n"
    pdf += zlib.compress(body) + b"\nendstream\nendobj\n6 0 obj <</Type /Page>> endobj\n%%EOF\n"
    assert count_page_objects(pdf) == 3


def test_comparison_without_a_p_value_stays_valid_json(report_data, tiny_run) -> None:
    from medtl.reports.builder import load_run
    from medtl.reports.html import render_html
    from medtl.reports.sections import transfer_section

    comparison = dict(
        NEGATIVE_COMPARISON, delong_p_value=float("nan"), verdict="no significant difference"
    )
    section = transfer_section(load_run(tiny_run), comparison, None, None, None)
    assert section.comparison["delong_p_value"] is None and not section.negative_transfer
    assert any("--learning-curves" in n for n in section.notes)
    data = report_data.model_copy(update={"transfer": section})
    jsonschema.validate(json.loads(data.model_dump_json()), report_schema())
    html = re.sub(r"data:image/png;base64,[^\"]+", "", render_html(data))
    assert "NaN" not in html and "n/a" in html and 'id="negative-transfer"' not in html


def test_report_takes_the_scores_file_medtl_score_writes(tiny_run) -> None:
    """`medtl score --out` writes {scores, ranking, kendall_tau}; the report shows the scores
    (before, the keys "scores"/"ranking" were taken for backbone names)."""
    from medtl.artifacts import TransferabilityScores
    from medtl.reports.builder import load_run
    from medtl.reports.sections import transfer_section

    written = {
        "scores": {"trained": {"logme": -0.2, "h_score": 1.5}, "random": {"logme": -0.9}},
        "ranking": {"logme": ["trained", "random"]},
        "kendall_tau": {},
    }
    scores = TransferabilityScores.parse(written)
    section = transfer_section(load_run(tiny_run), None, None, scores, None)
    assert section.transferability == written["scores"]
