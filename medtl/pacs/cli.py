"""``medtl pacs ...``: test the connection, search, analyse a study, send results back,
show push status, listen for studies.

Identifiers the PACS returns (``find``) are printed for the operator and never written
anywhere else. Errors print one ``error: ...`` line on stderr and exit 2; a push that fails
exits 1 (it is recorded and can be retried with ``medtl pacs push --retry-failed``), and so
does a push refused before it is tried (one ``error:`` line).
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from medtl._cli import fail

if TYPE_CHECKING:  # pragma: no cover
    from medtl.pacs.settings import PacsSettings
    from medtl.review import ReviewStore

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="PACS in and out: DICOMweb/DIMSE query, retrieve, analyse, SR push.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


def _settings() -> PacsSettings:
    from medtl.pacs.settings import PacsSettingsError, load_pacs_settings

    try:
        return load_pacs_settings()
    except PacsSettingsError as err:
        raise fail(err) from None


def _store() -> ReviewStore:
    from medtl.review import ReviewStore

    return ReviewStore.open()


@app.command("echo")
def echo() -> None:
    """Test both paths to the PACS (DICOMweb QIDO-RS and DIMSE C-ECHO)."""
    from medtl.pacs.client import echo as run_echo

    settings = _settings()
    try:
        settings.require_connection()
    except ValueError as err:
        raise fail(err) from None
    results = run_echo(settings)
    for r in results:
        typer.echo(f"{r.path}: {'ok' if r.ok else 'FAILED'} - {r.detail}")
    configured = [r for r in results if "not configured" not in r.detail]
    if any(not r.ok for r in configured):
        raise typer.Exit(1)


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value.replace("-", ""), "%Y%m%d").date()
    except ValueError:
        raise fail(f"--since must be a date like 2025-11-03, not {value!r}") from None


@app.command("find")
def find(
    patient_id: Annotated[str | None, typer.Option("--patient-id", help="PatientID.")] = None,
    accession: Annotated[str | None, typer.Option("--accession", help="AccessionNumber.")] = None,
    modality: Annotated[str | None, typer.Option("--modality", help="e.g. CT or CR.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Studies on or after DATE.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search studies (QIDO-RS; C-FIND when only DIMSE is configured). Nothing is stored."""
    from medtl.pacs.client import find as run_find
    from medtl.pacs.types import PacsError, StudyQuery

    query = StudyQuery(patient_id, accession, modality, _parse_date(since), limit)
    try:
        hits = run_find(_settings(), query)
    except (PacsError, ValueError) as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no studies found")
    for h in hits:
        typer.echo(
            f"{h.study_uid}  {h.study_date or '-':8}  {h.patient_id or '-'}  "
            f"{h.patient_name or '-'}  {h.accession or '-'}  "
            f"{'/'.join(h.modalities) or '-'}  {h.n_instances or '?'} images"
        )


@app.command("analyse")
def analyse(
    study_uid: Annotated[str, typer.Argument(help="StudyInstanceUID in the PACS.")],
    model: Annotated[str, typer.Option("--model", help="Model package: name[@version] or folder.")],
    queue: Annotated[
        bool, typer.Option("--queue", help="Queue it for `medtl worker` instead of analysing now.")
    ] = False,
) -> None:
    """Retrieve a study, de-identify it, create the case and analyse it (or queue it)."""
    from medtl.io import ScanError
    from medtl.models.package import PackageError
    from medtl.pacs.types import PacsError, StudyRefusedError

    settings = _settings()
    with _store() as store:
        try:
            if queue:
                from medtl.pacs.jobs import queue_study

                job = queue_study(store, study_uid, model)
                typer.echo(f"queued job {job.id} ({job.status})")
                return
            from medtl.pacs.ingest import analyse_study

            out = analyse_study(store, settings, study_uid, model)
        except StudyRefusedError as err:
            typer.echo(f"refused (no case, no result): {'; '.join(err.reasons)}")
            raise typer.Exit(1) from None
        except (PacsError, ScanError, PackageError, ValueError) as err:
            raise fail(err) from None
    typer.echo(f"case {out.case_id}{'' if out.new_case else ' (existing)'}: {out.summary}")


@app.command("push")
def push(
    case_id: Annotated[str | None, typer.Argument(help="Case pseudonym.")] = None,
    prediction_id: Annotated[
        int | None,
        typer.Option(
            "--result",
            "--prediction-id",
            help="AI result to send (default: the case's latest).",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Retry every failed or pending push.")
    ] = False,
) -> None:
    """Store the reviewed AI result as a DICOM SR in the case's original study.

    A result that cannot be sent (refused by the model's domain guard, not reviewed, or
    not the reviewed one) prints one ``error:`` line and exits 1, as a failed push does.
    """
    from medtl.pacs.push import PushRefusedError, push_case
    from medtl.pacs.push import retry_failed as run_retry
    from medtl.pacs.types import PacsError
    from medtl.review import CaseNotFoundError

    if (case_id is None) == (not retry_failed):
        raise fail("give a CASE_ID or --retry-failed")
    settings = _settings()
    with _store() as store:
        try:
            outcomes = (
                run_retry(store, settings)
                if retry_failed
                else [push_case(store, settings, case_id, prediction_id=prediction_id)]
            )
        except PushRefusedError as err:
            raise fail(err, code=1) from None
        except (CaseNotFoundError, PacsError) as err:
            raise fail(err) from None
    for o in outcomes:
        note = " (UNVERIFIED)" if o.unverified else ""
        typer.echo(
            f"{o.case_id} result {o.prediction_id} ({o.model}): {o.status}{note}, attempt "
            f"{o.attempts}" + (f": {o.error}" if o.error else "")
        )
    if any(o.status != "done" for o in outcomes):
        raise typer.Exit(1)


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every SR push (done, failed with the reason, or pending) and every analysis the
    model refused (its reasons: nothing was recorded and nothing can be sent)."""
    from medtl.pacs.jobs import job_queue
    from medtl.pacs.records import list_pushes

    with _store() as store:
        records = list_pushes(store.db)
        refused = job_queue(store).list_jobs("refused")
    if as_json:
        pushes = [{**r.__dict__, "updated_at": r.updated_at.isoformat()} for r in records]
        refusals = [{"job": j.id, "model": j.model, "reasons": j.last_error} for j in refused]
        typer.echo(json.dumps({"pushes": pushes, "refused": refusals}, indent=2))
        return
    if not records:
        typer.echo("no pushes yet")
    for r in records:
        typer.echo(
            f"{r.case_id} result {r.prediction_id}: {r.status} after {r.attempts} "
            f"attempt(s)" + (f": {r.last_error}" if r.last_error else "")
        )
    for j in refused:
        typer.echo(f"job {j.id} {j.model}: refused, nothing to send: {j.last_error}")


@app.command("listen")
def listen(
    port: Annotated[int | None, typer.Option("--port", help="Default: MEDTL_LISTEN_PORT.")] = None,
    quiet_seconds: Annotated[
        float | None,
        typer.Option("--quiet-seconds", help="A series is complete after this long without news."),
    ] = None,
    max_series: Annotated[
        int | None,
        typer.Option("--max-series", help="Stop after this many series (for scripts and tests)."),
    ] = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="Queue series for `medtl worker` instead.")
    ] = False,
) -> None:
    """Run a C-STORE listener: group instances into series, route, create cases, analyse."""
    from medtl.pacs.listener import Listener

    settings = _settings()
    update = {
        k: v for k, v in (("listen_port", port), ("quiet_seconds", quiet_seconds)) if v is not None
    }
    settings = settings.model_copy(update=update)
    with _store() as store:
        listener = Listener(store, settings, queue=queue)
        typer.echo(
            f"listening as {settings.local_ae_title} on port {settings.listen_port}", err=True
        )
        try:
            listener.serve(max_series=max_series)
        except KeyboardInterrupt:
            pass
        finally:
            listener.stop()
    for o in listener.outcomes:
        typer.echo(f"case {o.case_id}: {o.summary}")
    for reasons in listener.refusals:
        typer.echo(f"refused (no case, no result): {reasons}")


@app.command("jobs")
def jobs(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the analysis queue: queued, running, failed (with the reason) and done."""
    from medtl.pacs.jobs import job_queue

    with _store() as store:
        items = job_queue(store).list_jobs()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": j.id,
                        "kind": j.kind,
                        "model": j.model,
                        "status": j.status,
                        "attempts": j.attempts,
                        "case_id": j.case_id,
                        "error": j.last_error,
                    }
                    for j in items
                ],
                indent=2,
            )
        )
        return
    if not items:
        typer.echo("no jobs")
    for j in items:
        typer.echo(
            f"job {j.id} {j.kind} {j.model}: {j.status} (attempt {j.attempts}/"
            f"{j.max_attempts})"
            + (f" case {j.case_id}" if j.case_id else "")
            + (f": {j.last_error}" if j.last_error and j.status != "done" else "")
        )


worker_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@worker_app.command("worker")
def worker(
    until_empty: Annotated[
        bool, typer.Option("--until-empty", help="Process what is queued, then exit.")
    ] = False,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds", min=1, help="Lease of a claimed job (renewed while it runs)."
        ),
    ] = 120,
    poll_seconds: Annotated[
        float,
        typer.Option("--poll-seconds", min=0.05, help="Wait between polls of an empty queue."),
    ] = 1.0,
) -> None:
    """Run queued analyses (several workers, also on several machines, share one queue)."""
    from medtl.pacs.jobs import Worker

    settings = _settings()
    with _store() as store:
        try:
            done = Worker(store, settings, lease_s=lease_seconds, poll_s=poll_seconds).run(
                until_empty=until_empty
            )
        except KeyboardInterrupt:
            done = []
    for d in done:
        typer.echo(
            f"job {d.job_id}: {d.status}"
            + (f" case {d.case_id}" if d.case_id else "")
            + (f": {d.error}" if d.error else "")
        )
    if any(d.status == "failed" for d in done):  # a refusal is the model's answer
        raise typer.Exit(1)
