"""The `ldrt` command line. Settings are built here, once, and passed down.

ldrt doctor            configuration and the state of every service
ldrt db upgrade        migrate the lineage database to the newest schema
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ldrt_core import __version__
from ldrt_core.config import Settings, load_settings, mask_url
from ldrt_core.errors import LdrtError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ldrt_core.extract import ExtractOptions

app = typer.Typer(
    help="ldrt: keep a vision-language model current with the LDRT literature.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # main() turns our errors into one readable line
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="The lineage database: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
dataset_app = typer.Typer(help="Curated, versioned datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
qa_app = typer.Typer(
    help="Instruction data generated from the curated pairs.", no_args_is_help=True
)
app.add_typer(qa_app, name="qa")
model_app = typer.Typer(help="Training runs and the models they made.", no_args_is_help=True)
app.add_typer(model_app, name="model")

console = Console()
err_console = Console(stderr=True)

_MARKS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


def _settings(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    settings: Settings = root.obj
    return settings


def _engine(settings: Settings) -> Engine:
    """The lineage database, migrated to the newest schema (a no-op when it already is)."""
    from ldrt_core import db

    engine = db.connect(settings)
    db.upgrade(engine)
    return engine


def _checked_engine(settings: Settings) -> Engine:
    """The lineage database as it is, for a check: never created or migrated, so that a wrong
    LDRT_DB_URL is an error, not an empty database against which every object is an orphan."""
    from ldrt_core import db

    file = db.sqlite_file(settings.db_url)
    if file is not None and not file.is_file():
        raise LdrtError(f"no database at {file}: is LDRT_DB_URL right?")
    engine = db.connect(settings)
    gap = db.schema_gap(db.current_revision(engine))
    if gap is not None:
        engine.dispose()
        raise LdrtError(
            f"{mask_url(settings.db_url)}: {gap}; is LDRT_DB_URL right? "
            "(`ldrt db upgrade` migrates it)"
        )
    return engine


def _version(value: bool) -> None:
    if value:
        console.print(f"ldrt {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Configuration comes from LDRT_* environment variables; `ldrt doctor` shows it."""


def _exit_if_failed(failed: int) -> None:
    """Exit 1 after a batch command's summary when some of its items failed, as the stage's
    flow run ends Failed: a script or cron job sees it, and the output says which and why."""
    if failed:
        raise typer.Exit(1)


@app.command()
def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the configuration (secrets masked) and whether each service is reachable.

    Exits 1 when a configured service is unreachable.
    """
    from ldrt_core.doctor import run_checks

    settings = _settings(ctx)
    checks = run_checks(settings, _prefect_api_url())
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        print(
            json.dumps(
                {
                    "config": settings.redacted(),
                    "checks": [
                        {"name": c.name, "status": c.status, "detail": c.detail} for c in checks
                    ],
                    "ok": not failed,
                },
                indent=2,
            )
        )
    else:
        config = Table(title="Configuration", title_justify="left", show_header=False, box=None)
        for name, value in settings.redacted().items():
            config.add_row(f"[bold]{name}[/]", value)
        services = Table(title="Services", title_justify="left", show_header=False, box=None)
        for check in checks:
            services.add_row(_MARKS[check.status], f"[bold]{check.name}[/]", escape(check.detail))
        console.print(config, "", services)
    if failed:
        raise typer.Exit(1)


@app.command()
def refresh(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Option(help="Bulk-search query (default: LDRT_REFRESH_QUERY).")
    ] = None,
    since: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Search from this date instead of the cursor."),
    ] = None,
    max_papers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Stop after this many new papers (ones seen before do not count)."
        ),
    ] = None,
    source: Annotated[
        str, typer.Option(help="'s2' (Semantic Scholar) or 'folder:PATH' (a folder of PDFs).")
    ] = "s2",
    retry_failed: Annotated[
        bool, typer.Option(help="Try again the papers whose download failed before.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Find papers new since the last refresh and store their PDFs once each.

    Exits 1 when a download failed (each failure is recorded with its reason; the other papers
    are stored), as the refresh flow run ends Failed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ldrt_core.refresh import refresh as run_refresh
    from ldrt_core.sources import open_source
    from ldrt_core.store import open_store

    settings = _settings(ctx)
    engine = _engine(settings)
    store = open_store(settings)
    paper_source = open_source(settings, source)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=as_json,
    )
    task = bar.add_task("downloading PDFs", total=None)
    try:
        with bar:
            summary = run_refresh(
                engine,
                store,
                paper_source,
                query or settings.refresh_query,
                since=since.date() if since else None,
                max_papers=max_papers,
                overlap_days=settings.refresh_overlap_days,
                retry_failed=retry_failed,
                workers=settings.download_workers,
                retries=settings.download_retries,
                backoff_s=settings.download_backoff_s,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        paper_source.close()
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
        _exit_if_failed(summary.failed)
        return
    console.print(
        f"[bold]{summary.found}[/] papers found from {summary.source} "
        f"(since {summary.since or 'the beginning'}): [bold]{summary.new}[/] new, "
        f"[green]{summary.downloaded}[/] PDFs downloaded "
        f"({summary.already_stored} already stored), "
        f"{summary.no_pdf} without an open PDF, [red]{summary.failed}[/] failed "
        f"in {summary.seconds:.1f} s"
    )
    if summary.failures:
        failures = Table("paper", "why it failed", title="Failed downloads", title_justify="left")
        for failure in summary.failures:
            failures.add_row(str(failure["paper"]), escape(str(failure["error"])))
        console.print(failures)
    _exit_if_failed(summary.failed)


@app.command()
def extract(
    ctx: typer.Context,
    pdfs: Annotated[
        list[Path] | None, typer.Argument(help="PDF files to extract (nothing stored).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the figure PNGs (default: <pdf>-figures).")
    ] = None,
    pending: Annotated[
        bool, typer.Option(help="Extract every stored document not yet extracted.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="With --pending: retry failed ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Figures with captions and mentions, tables and markdown from PDFs.

    `ldrt extract paper.pdf --json` works on a file; `ldrt extract --pending` works through the
    documents a refresh stored, in worker processes with time and memory limits, and exits 1
    when a document failed (recorded with its reason; the others are extracted).
    """
    from ldrt_core.extract.stage import options_from_settings

    settings = _settings(ctx)
    options = options_from_settings(settings)
    if pending:
        _extract_pending(settings, options, retry_failed, as_json)
        return
    if not pdfs:
        raise typer.BadParameter("give PDF files, or --pending for the stored documents")
    from ldrt_core.extract import extract_pdf, with_marker_markdown
    from ldrt_core.extract.stage import summary_json

    results = []
    for pdf in pdfs:
        if not pdf.is_file():
            raise typer.BadParameter(f"{pdf} is not a file")
        try:
            data = pdf.read_bytes()
        except OSError as exc:
            raise LdrtError(f"cannot read {pdf}: {exc.strerror or exc}") from None
        document = with_marker_markdown(extract_pdf(data, options), data, options.marker_models)
        folder = out or pdf.with_name(f"{pdf.stem}-figures")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for figure in document.figures:
            path = (
                folder / f"{pdf.stem}-p{figure.page}-{figure.label.replace(' ', '-').lower()}.png"
            )
            path.write_bytes(figure.image_png or b"")
            paths.append(str(path))
        (folder / f"{pdf.stem}.md").write_text(document.markdown, encoding="utf-8")
        results.append(summary_json(document, paths))
        if not as_json:
            console.print(
                f"{pdf}: {document.pages} pages, {len(document.figures)} figures, "
                f"{len(document.tables)} tables -> {folder}"
            )
    if as_json:
        print(
            json.dumps(results[0] if len(results) == 1 else results, indent=2, ensure_ascii=False)
        )


def _extract_pending(
    settings: Settings, options: ExtractOptions, retry_failed: bool, as_json: bool
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import Progress

    from ldrt_core.extract.isolation import IsolatedPool
    from ldrt_core.extract.stage import extract_document, pending_documents
    from ldrt_core.store import open_store

    engine = _engine(settings)
    store = open_store(settings)
    todo = pending_documents(engine, retry_failed=retry_failed)
    outcomes = []
    with (
        IsolatedPool(settings.extract_workers, options) as pool,
        ThreadPoolExecutor(settings.extract_workers) as threads,
        Progress(console=err_console, transient=as_json) as bar,
    ):
        task = bar.add_task("extracting PDFs", total=len(todo))
        futures = [
            threads.submit(extract_document, engine, store, sha, pool=pool, force=retry_failed)
            for sha in todo
        ]
        for future in futures:
            outcomes.append(future.result())
            bar.advance(task)
    summary: dict[str, Any] = {
        "documents": len(outcomes),
        "ok": sum(o.status == "ok" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "pages": sum(o.pages for o in outcomes),
        "figures": sum(o.figures for o in outcomes),
        "failures": [{"sha256": o.sha256, "error": o.error} for o in outcomes if o.error],
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        _exit_if_failed(summary["failed"])
        return
    console.print(
        f"{summary['documents']} documents: {summary['ok']} extracted "
        f"({summary['pages']} pages, {summary['figures']} figures), "
        f"[red]{summary['failed']}[/] failed"
    )
    for failure in summary["failures"]:
        console.print(f"  [red]{failure['sha256'][:12]}[/] {escape(failure['error'])}")
    _exit_if_failed(summary["failed"])


@app.command("demo")
def demo(
    ctx: typer.Context,
    papers: Annotated[int, typer.Option(min=4, help="Sample papers to make.")] = 8,
    steps: Annotated[int, typer.Option(min=1, help="Training steps per stage.")] = 20,
    questions: Annotated[int, typer.Option(min=1, help="Held-out conversations to evaluate.")] = 12,
) -> None:
    """The main job on embedded defaults, offline: a sample corpus, refresh, extract, curate,
    QA (template), both training stages of a tiny random LLaVA, evaluation, the report."""
    settings = _settings(ctx)
    corpus = settings.home / "sample"
    started = dt.datetime.now(dt.UTC)

    def say(step: str) -> None:
        err_console.rule(f"[bold]{step}[/]")

    failed: list[str] = []

    def items(step: str, command: Callable[[], None]) -> None:
        """A batch command whose failed items (exit 1) leave the others to go on with, as the
        pipeline does; the demo then ends with exit 1, naming the step."""
        try:
            command()
        except typer.Exit as exit_:
            if exit_.exit_code != 1:
                raise
            failed.append(step)

    say("1/7 sample corpus")
    sample_corpus(corpus, papers=papers, seed=0)
    say("2/7 refresh")
    items("refresh", lambda: refresh(ctx, source=f"folder:{corpus}"))
    say("3/7 extract")
    items("extract", lambda: extract(ctx, pending=True))
    try:
        say("4/7 curate")
        curation = settings.home / "demo-curation.yaml"
        curation.write_text("eval_share: 0.35  # a small corpus needs a large share held out\n")
        dataset_build(ctx, config=curation)
        say("5/7 QA (template backend)")
        items("QA", lambda: qa_generate(ctx, backend="template"))
        say("6/7 train (tiny random LLaVA, both stages)")
        train(
            ctx,
            base_model="tiny-random",
            epochs=100,  # --steps decides
            max_steps=steps,
            lora_r=16,
            lora_alpha=32,
            align_lr=1e-2,
            instruct_lr=1e-2,
            checkpoint_every=0,
        )
        say("7/7 evaluate")
        evaluate(ctx, run="latest", limit=questions, max_new_tokens=64)
    except (LdrtError, typer.Exit):
        if failed:  # the likely cause, which the error of a later step would not say
            err_console.print(f"[red]items had failed in: {', '.join(failed)}[/] (listed above)")
        raise
    took = (dt.datetime.now(dt.UTC) - started).total_seconds()
    console.print(
        f"\ndemo done in {took:.0f} s. Read the report: [bold]ldrt report latest[/] "
        f"(or `ldrt report latest --out report/` for its plots); data is under {settings.home}"
    )
    if failed:
        err_console.print(f"[red]some items failed in: {', '.join(failed)}[/] (listed above)")
        raise typer.Exit(1)


@app.command("sample-corpus")
def sample_corpus(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the papers into.")],
    papers: Annotated[int, typer.Option(min=1, help="How many papers.")] = 8,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same bytes.")] = 0,
) -> None:
    """Write synthetic LDRT-style papers: PDFs, ground-truth JSON and metadata.jsonl.

    Refresh from them with `ldrt refresh --source folder:OUT_DIR`.
    """
    from rich.progress import Progress

    from ldrt_core.samples import write_sample_corpus

    with Progress(console=err_console) as bar:
        task = bar.add_task("writing papers", total=papers)
        written = write_sample_corpus(
            out_dir,
            papers=papers,
            seed=seed,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    figures = sum(len(json.loads(p.truth_path.read_text())["figures"]) for p in written)
    console.print(f"{len(written)} papers with {figures} figures in {out_dir}")


@dataset_app.command("build")
def dataset_build(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML or JSON: filters (name + parameters), eval_share, ..."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Filter the extracted figure-caption pairs, split them by paper, and store a version."""
    from ldrt_core.curate.dataset import CurationConfig, build_dataset
    from ldrt_core.store import open_store

    settings = _settings(ctx)
    curation = CurationConfig.from_mapping(_read_config(config)) if config else CurationConfig()
    built = build_dataset(_engine(settings), open_store(settings), curation)
    if as_json:
        print(json.dumps({"id": built.id, "created": built.created, **built.stats}, indent=2))
        return
    _print_dataset(built.id, built.stats)
    console.print("(this version existed already)" if not built.created else "")


@dataset_app.command("show")
def dataset_show(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="A dataset version id, or its first characters.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts per filter and per split of a dataset version."""
    from ldrt_core.curate.dataset import find_version

    row = find_version(_engine(_settings(ctx)), version)
    if as_json:
        print(
            json.dumps(
                {"id": row.id, "kind": row.kind, "manifest": row.manifest_key, **row.stats},
                indent=2,
            )
        )
        return
    _print_dataset(row.id, row.stats)


@dataset_app.command("list")
def dataset_list(ctx: typer.Context) -> None:
    """Every dataset version, newest first."""
    from sqlalchemy import select

    from ldrt_core.db import session_scope
    from ldrt_core.db.models import DatasetVersion

    with session_scope(_engine(_settings(ctx))) as session:
        rows = list(
            session.scalars(select(DatasetVersion).order_by(DatasetVersion.created_at.desc()))
        )
    table = Table("version", "kind", "train", "eval", "created")
    for row in rows:
        splits = row.stats.get("splits", {})
        table.add_row(
            row.id[:16],
            row.kind,
            str(splits.get("train", "")),
            str(splits.get("eval", "")),
            str(row.created_at)[:19],
        )
    console.print(table)


@qa_app.command("generate")
def qa_generate(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Option(help="A curated dataset version (id or prefix), or 'latest'.")
    ] = "latest",
    backend: Annotated[
        str | None,
        typer.Option(help="template, openai, hf or vllm (default: LDRT_LLM_BACKEND)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name or local directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Generate LLaVA conversations for every pair of a curated dataset (cached per pair).

    Exits 1 when a pair failed (recorded with its reason; the versions hold the others, and a
    second run retries only the failed pairs).
    """
    from dataclasses import asdict

    from ldrt_core.llm.factory import open_llm
    from ldrt_core.qa import LLMQAGenerator, QAGenerator, TemplateQAGenerator, generate_for_dataset
    from ldrt_core.store import open_store

    settings = _settings(ctx)
    chosen = backend or settings.llm_backend
    generator: QAGenerator
    client = None
    if chosen == "template":
        generator = TemplateQAGenerator()
    else:
        client = open_llm(settings, chosen, model)
        generator = LLMQAGenerator(client)
    try:
        summary = generate_for_dataset(_engine(settings), open_store(settings), dataset, generator)
    finally:
        if client is not None:
            client.close()
    if as_json:
        print(json.dumps(asdict(summary), indent=2))
        _exit_if_failed(summary.failed)
        return
    console.print(
        f"{summary.pairs} pairs: {summary.generated} generated, {summary.cached} from cache, "
        f"[red]{summary.failed}[/] failed, {summary.dropped_turns} leaking turns dropped\n"
        f"instruct version {summary.instruct_id}\nalign version    {summary.align_id}"
    )
    for pair, error in list(summary.failures.items())[:10]:
        console.print(f"  [red]{pair}[/] {escape(error)}")
    _exit_if_failed(summary.failed)


@app.command("train")
def train(
    ctx: typer.Context,
    stage: Annotated[
        str, typer.Option(help="align (stage 1), instruct (stage 2) or both, in that order.")
    ] = "both",
    dataset: Annotated[
        str,
        typer.Option(help="Dataset version (curated, or its align/instruct version), or 'latest'."),
    ] = "latest",
    base_model: Annotated[
        str | None,
        typer.Option(help="Local llava-hf directory, or tiny-random (default: LDRT_BASE_MODEL)."),
    ] = None,
    deepspeed: Annotated[
        str | None,
        typer.Option(help="DeepSpeed config: zero3, zero2 or a JSON file (LDRT_TRAIN_DEEPSPEED)."),
    ] = None,
    from_run: Annotated[
        str | None, typer.Option(help="Stage 2 only: start from this stage-1 run's projector.")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue this unfinished run ('latest': the newest) from its newest checkpoint."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data (1).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Per device (4).")] = None,
    grad_accum: Annotated[int | None, typer.Option(min=1, help="Micro-batches per step.")] = None,
    align_lr: Annotated[float | None, typer.Option(help="Stage 1 learning rate (1e-3).")] = None,
    instruct_lr: Annotated[float | None, typer.Option(help="Stage 2 LoRA rate (2e-4).")] = None,
    projector_lr: Annotated[
        float | None, typer.Option(help="Stage 2 projector rate (2e-5); 0 freezes it.")
    ] = None,
    lora_r: Annotated[int | None, typer.Option(min=1, help="LoRA rank (128).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(min=1, help="LoRA alpha (256).")] = None,
    max_length: Annotated[
        int | None, typer.Option(min=16, help="Longer samples are skipped (2048).")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=0, help="Steps between checkpoints (200).")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed (0).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data loader processes (0).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    local_rank: Annotated[int | None, typer.Option("--local_rank", hidden=True)] = None,
) -> None:
    """Fine-tune LLaVA: stage 1 aligns the projector, stage 2 tunes LoRA on conversations.

    On several GPUs: `deepspeed --num_gpus N --module flows.cli train --deepspeed zero3 ...`
    (or `torchrun --nproc_per_node N -m flows.cli train --deepspeed zero3 ...`).
    """
    from ldrt_core.store import open_store
    from ldrt_core.train.runs import resume_stage, stage_configs, train_stage

    settings = _settings(ctx)
    configs = stage_configs(
        settings,
        stage,
        from_run=from_run,
        deepspeed=deepspeed,
        align_lr=align_lr,
        instruct_lr=instruct_lr,
        projector_lr=projector_lr,
        checkpoint_every=checkpoint_every,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        max_length=max_length,
        precision=precision,
        seed=seed,
        workers=workers,
    )
    engine, store = _engine(settings), open_store(settings)
    summaries = []
    with _TrainProgress(quiet=as_json) as progress:
        if resume:
            summaries.append(
                resume_stage(
                    engine,
                    store,
                    settings.home,
                    resume,
                    on_step=progress.step,
                    on_prepare=progress.prepare,
                )
            )
        else:
            parent = from_run
            for config in configs:
                progress.start(config.stage)
                summary = train_stage(
                    engine,
                    store,
                    settings.home,
                    dataset=dataset,
                    base_model=base_model or settings.base_model,
                    config=config,
                    parent_run=parent,
                    on_step=progress.step,
                    on_prepare=progress.prepare,
                )
                summaries.append(summary)
                parent = summary.run_id
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if as_json:
        from dataclasses import asdict

        print(json.dumps([asdict(s) for s in summaries], indent=2))
        return
    for summary in summaries:
        metrics, data = summary.metrics, summary.data
        skipped = ", ".join(f"{k} {v}" for k, v in data.get("skipped", {}).items()) or "none"
        console.print(
            f"[bold]{summary.stage}[/] run {summary.run_id}: {metrics.get('steps')} steps, "
            f"loss {metrics.get('first_loss'):.3f} -> {metrics.get('final_loss'):.3f}, "
            f"{data.get('samples')} samples (skipped: {skipped}), "
            f"{metrics.get('seconds'):.1f} s\n  outputs: " + ", ".join(sorted(summary.outputs))
        )


class _TrainProgress:
    """A rich progress bar for data preparation and training steps (loss, samples/s)."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            "{task.fields[info]}",
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet or int(os.environ.get("RANK", "0")) != 0,
        )
        self.name = "train"
        self.prepare_task: Any = None
        self.train_task: Any = None

    def __enter__(self) -> _TrainProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def start(self, name: str) -> None:
        self.name, self.prepare_task, self.train_task = name, None, None

    def prepare(self, done: int, total: int) -> None:
        if self.prepare_task is None:
            self.prepare_task = self.bar.add_task(f"{self.name}: samples", total=total, info="")
        self.bar.update(self.prepare_task, completed=done)

    def step(self, report: Any) -> None:
        if self.train_task is None:
            self.train_task = self.bar.add_task(
                f"{self.name}: steps", total=report.total_steps, info=""
            )
        self.bar.update(
            self.train_task,
            completed=report.step,
            info=f"loss {report.loss:.4f}  {report.samples_per_s:.1f} samples/s",
        )


@model_app.command("list")
def model_list(ctx: typer.Context) -> None:
    """Every training run, newest first."""
    from sqlalchemy import select

    from ldrt_core.db import session_scope
    from ldrt_core.db.models import TrainingRun

    with session_scope(_engine(_settings(ctx))) as session:
        rows = list(session.scalars(select(TrainingRun).order_by(TrainingRun.created_at.desc())))
    table = Table("run", "stage", "status", "dataset", "parent", "steps", "final loss", "created")
    for row in rows:
        loss = row.metrics.get("final_loss")
        table.add_row(
            row.id[:12],
            row.stage,
            row.status,
            row.dataset_id[:12],
            (row.parent_run_id or "")[:12],
            str(row.metrics.get("steps", "")),
            f"{loss:.4f}" if isinstance(loss, float) else "",
            str(row.created_at)[:19],
        )
    console.print(table)


@model_app.command("show")
def model_show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A training run id, its first characters, or latest.")],
) -> None:
    """One training run as JSON: config, data counts, metrics, outputs, error."""
    from ldrt_core.train.runs import find_run

    row = find_run(_engine(_settings(ctx)), run)
    fields = ("id", "stage", "status", "base_model", "dataset_id", "parent_run_id", "config")
    payload = {name: getattr(row, name) for name in fields}
    payload |= {"metrics": row.metrics, "outputs": row.outputs, "error": row.error}
    print(json.dumps(payload, indent=2, default=str))


@model_app.command("merge")
def model_merge(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A completed training run (id, prefix or latest).")],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: $LDRT_HOME/models/RUN).")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="The base model's directory, if it moved since training.")
    ] = None,
    keep_adapter: Annotated[
        bool,
        typer.Option(help="Copy the LoRA to OUT/adapter instead of merging (vLLM --enable-lora)."),
    ] = False,
) -> None:
    """Write a standalone checkpoint: base model + the run's projector(s) + merged LoRA."""
    from ldrt_core.store import open_store
    from ldrt_core.train.runs import find_run, merge_run

    settings = _settings(ctx)
    engine = _engine(settings)
    row = find_run(engine, run)
    target = out or settings.home / "models" / row.id
    merge_run(
        engine,
        open_store(settings),
        row.id,
        target,
        base_model=base_model,
        keep_adapter=keep_adapter,
    )
    console.print(f"merged {row.stage} run {row.id[:12]} into {target}")


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    run: Annotated[str, typer.Option(help="The training run to evaluate (id, prefix or latest).")],
    baseline: Annotated[
        str, typer.Option(help="'base' (the base model it was trained from) or another run.")
    ] = "base",
    judge: Annotated[
        list[str] | None,
        typer.Option(help="A judge: MODEL[@BASE_URL] or hf:DIR; repeat for more (LDRT_JUDGES)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset version (default: the run's own).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="First N held-out conversations.")
    ] = None,
    temperature: Annotated[float, typer.Option(min=0, help="Answer sampling temperature.")] = 0.2,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest answer (tokens).")] = 512,
    base_model: Annotated[
        str | None, typer.Option(help="The base model's directory, if it moved since training.")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Answering: transformers, or vllm (a CUDA host with vllm).")
    ] = "transformers",
    pairwise: Annotated[
        bool, typer.Option(help="Judges also compare the two answers (both orders).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Answer the held-out questions with the baseline and the tuned model, score them (judges,
    ROUGE, length ratio, hedging) and store the report."""
    from rich.progress import Progress

    from ldrt_core.evaluate.answer import Sampling
    from ldrt_core.evaluate.stage import evaluate_run, open_judges
    from ldrt_core.store import open_store

    settings = _settings(ctx)
    judges = open_judges(settings, judge or None)  # none given: LDRT_JUDGES
    sampling = Sampling(temperature=temperature, max_new_tokens=max_new_tokens)
    try:
        with Progress(console=err_console, transient=as_json) as bar:
            tasks: dict[str, Any] = {}

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done, total=total)

            summary = evaluate_run(
                _engine(settings),
                open_store(settings),
                run=run,
                baseline=baseline,
                judges=judges,
                dataset=dataset,
                limit=limit,
                sampling=sampling,
                base_model=base_model,
                backend=backend,
                work_dir=settings.home,
                pairwise=pairwise,
                progress=progress,
            )
    finally:
        for j in judges:
            j.client.close()
    if as_json:
        from dataclasses import asdict

        print(json.dumps(asdict(summary), indent=2, default=str))
        return
    console.print(
        f"{summary.items} questions, judges: {', '.join(summary.judges) or 'none'}\n"
        f"report: {summary.report_prefix}/report.md (`ldrt report {run}`)"
    )


@app.command("report")
def report(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A training run (id, prefix or latest).")],
    out: Annotated[
        Path | None, typer.Option(help="Also write report.md, report.json and plots here.")
    ] = None,
) -> None:
    """Print the newest evaluation report of a run (markdown)."""
    from ldrt_core.evaluate.stage import latest_report
    from ldrt_core.store import open_store

    settings = _settings(ctx)
    store = open_store(settings)
    row = latest_report(_engine(settings), run)
    assert row.report_key is not None
    prefix = row.report_key.rsplit("/", 1)[0]
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, no permission
            raise LdrtError(f"cannot write the report to {out}/: {exc.strerror or exc}") from None
        for key in store.list(prefix + "/"):
            store.get_file(key, out / key.rsplit("/", 1)[-1])
    print(store.get(row.report_key).decode())


@app.command("fsck")
def fsck(
    ctx: typer.Context,
    no_hash: Annotated[
        bool, typer.Option("--no-hash", help="Compare recorded sizes only; read no object.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the database against the store: every recorded key is stored with its recorded size
    and hash, and every stored object is referenced (caches aside).

    Exits 1 when anything is missing, damaged or orphaned.
    """
    from rich.progress import Progress

    from ldrt_core.fsck import check
    from ldrt_core.store import LocalStore, open_store

    settings = _settings(ctx)
    engine = _checked_engine(settings)
    store = open_store(settings, create=False)
    if isinstance(store, LocalStore) and not store.root.is_dir():
        raise LdrtError(f"no store at {store.root}: is LDRT_STORE_URL right?")
    with Progress(console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        result = check(engine, store, verify_hashes=not no_hash, progress=progress)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        rows = ", ".join(f"{table} {n}" for table, n in result.rows.items())
        checked = "hashed" if result.hashed else "size-checked (--no-hash)"
        console.print(
            f"{sum(result.rows.values())} rows ({rows}) record {result.references} keys; "
            f"{result.verified} objects {checked} ({result.bytes_hashed / 2**20:.1f} MiB read); "
            f"{result.objects} objects stored, {result.cached} of them in caches"
        )
        for problem in result.problems:  # one line each, keys whole: easy to grep and copy
            console.print(
                f"[red]{problem.kind:<13}[/] {escape(problem.key)}  {escape(problem.detail)}",
                highlight=False,
                soft_wrap=True,
            )
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.counts().items()))
        console.print("[green]ok[/]: no problems" if result.ok else f"[red]FAIL[/]: {counts}")
    if not result.ok:
        raise typer.Exit(1)


def _read_config(path: Path) -> dict[str, object]:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise typer.BadParameter(f"{path} must hold a mapping of settings")
    return raw


def _print_dataset(version: str, stats: dict[str, Any]) -> None:
    table = Table(
        "filter",
        "seen",
        "kept",
        "dropped",
        "top reasons",
        title=f"dataset {version[:16]}",
        title_justify="left",
    )
    for step in stats.get("filters", []):
        reasons = ", ".join(f"{r} ({n})" for r, n in list(step["reasons"].items())[:2])
        table.add_row(
            step["name"], str(step["seen"]), str(step["kept"]), str(step["dropped"]), reasons
        )
    console.print(table)
    splits = stats.get("splits", {})
    console.print(
        f"{stats.get('candidates')} candidate pairs -> train {splits.get('train')} "
        f"({stats.get('train_papers')} papers), eval {splits.get('eval')} "
        f"({stats.get('eval_papers')} papers); {stats.get('eval_dropped_as_near_duplicates')} "
        f"eval pairs dropped as near duplicates of training images\nversion {version}"
    )


def _prefect_api_url() -> str | None:
    """Prefect's own view of its API URL (env var, profile or default)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the lineage database up to REVISION (default: the newest)."""
    from ldrt_core import db

    engine = db.connect(_settings(ctx))
    before = db.current_revision(engine)
    db.upgrade(engine, revision)
    after = db.current_revision(engine)
    console.print(f"database schema: {before or 'empty'} -> {after}")


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops every table.")],
) -> None:
    """Migrate the lineage database down to REVISION."""
    from ldrt_core import db

    engine = db.connect(_settings(ctx))
    before = db.current_revision(engine)
    db.downgrade(engine, revision)
    console.print(
        f"database schema: {before or 'empty'} -> {db.current_revision(engine) or 'empty'}"
    )


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the schema revision of the database and the newest one ldrt knows."""
    from ldrt_core import db

    engine = db.connect(_settings(ctx))
    console.print(f"current: {db.current_revision(engine) or 'empty'}  head: {db.head_revision()}")


def main() -> None:
    """Console-script entry point: ldrt's own errors become one line and exit status 2."""
    try:
        app()
    except LdrtError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
