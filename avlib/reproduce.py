"""``avlib reproduce``: run the numbered notebooks with papermill and refresh ``figures/``.

For each experiment, ``04_train`` -> ``05_generate`` -> ``06_evaluate`` run with that
experiment's parameters into ``OUT/runs/{experiment}``; ``00``-``03`` run once, ``07_results``
tabulates every run beside the report's Table 2, ``08_human_eval`` compares the metrics
with ratings (the synthetic oracle when no ratings file is given) and ``09_toy_world`` shows
the toy world's stand-ins and its shipped acceptance record. The executed notebooks
stay in ``OUT/notebooks/`` as the record of the run. In the tiny profile the ten notebooks also run
as they come (default parameters, each in a kernel of its own, as ``pytest --nbval`` re-runs them)
and their outputs go back into ``notebooks/`` (:func:`store_outputs`), byte for byte the same on an
unchanged tree. Figures are written as
``{name}.{profile}.png``; ``figures/`` then gets this profile's figures (replacing the same
profile's older ones, keeping the other profile's) and a regenerated ``README.md``.

Notebooks run on two lanes (``--jobs``), each one kernel that runs its notebooks one after the
other, emptying its namespace before each: the imports (torch, diffusers) are paid once per lane.
Kernels run with ``AVLIB_HEADLESS=1`` so widgets print instead of waiting for clicks.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nbformat
from jupyter_core.utils import ensure_event_loop, run_sync
from tqdm.auto import tqdm
from traitlets import List

from avlib.config import PROFILES, load_config
from avlib.errors import AvlibError, ConfigError
from avlib.figures import figure_profile
from avlib.io import atomic_path, run_record, runs_dir, write_json
from avlib.kernels import ipc_kernel_config
from avlib.notebook import HEADLESS_ENV, notebook_parameters

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
# What stored outputs say instead of this checkout's folder: a second `make demo` in another
# clone writes the same bytes, and nbval's path rule sanitizes it as it does the live path.
CHECKOUT_PLACEHOLDER = "/path/to/avlib"
RECORD = "reproduce.json"
KERNEL = "python3"


# The experiments of the report's Table 2, in its row order.
DEFAULT_EXPERIMENTS = ("volleyball", "thunder", "dog", "dog_text", "multiclass", "tempotokens")
# The committed notebooks hold this profile's outputs, with default parameters.
STORED_PROFILE = "tiny"
# The notebooks that read the default runs, in the order nbval runs them: each reads what the
# one before made (05 the run 04 trained, 07 the dog run 06 scored and the dog_text run it makes).
DEFAULT_CHAIN = ("04_train", "05_generate", "06_evaluate", "07_results", "08_human_eval")


@dataclass
class NotebookRun:
    """One papermill execution: ``notebooks/{notebook}.ipynb`` -> ``OUT/notebooks/{output}.ipynb``;
    ``stored``: its outputs also go back into ``notebooks/{notebook}.ipynb`` (:func:`store_outputs`),
    so ``parameters`` may only hold ``figures_dir``, which changes no output."""

    notebook: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)
    stored: bool = False


def plan(profile: str, experiments: Sequence[str], out_dir: Path, overrides: Mapping[str, Any] | None = None,
         sample_limit: int | None = None) -> list[list[NotebookRun]]:
    """Every notebook execution of a reproduction, as chains: each chain runs in order, the
    chains before the last two may run in parallel, and the last two (07, 08 over every
    experiment) need them all.

    In the tiny profile with no overrides, the ten notebooks also run as they come (default
    parameters, ``stored``), exactly as ``pytest --nbval`` re-runs them: 00-03 and 09 once, and
    the chain 04 -> 08 on the default runs (``runs/dog_tiny``, ``runs/dog_text_tiny``, made in
    ``OUT/runs`` afresh, as nbval's empty ``AVLIB_RUNS``), in nbval's order.

    The parallel chains start in list order, longest first: the default chain, the experiments'
    (those with most classes first: multiclass samples two classes' test clips), then the single
    notebooks, slowest first, which fill in while the other lane finishes (short jobs last keep
    both lanes busy to the end). Table 2 keeps ``experiments``' order."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}' (choose from: {', '.join(PROFILES)})")
    if not experiments:
        raise ConfigError(f"no experiments given (choose from: {', '.join(DEFAULT_EXPERIMENTS)})")
    parameters = {name: notebook_parameters(name, profile) for name in experiments}  # fails early
    classes = {name: len(load_config(name, profile).data.classes) for name in experiments}
    figures = str(out_dir / "figures")
    common = {"profile": profile, "figures_dir": figures}
    overrides = dict(overrides or {})
    stored = profile == STORED_PROFILE and not overrides and sample_limit is None
    runs_dir = Path("runs")  # relative to out_dir, the kernels' working folder: tables name "runs/dog"
    run_dirs = [str(runs_dir / name) for name in experiments]
    chains = [[
        NotebookRun("04_train", f"04_train.{name}", {**common, **parameters[name],
                                                      "run_dir": run_dir, "overrides": overrides}),
        NotebookRun("05_generate", f"05_generate.{name}",
                    {"run_dir": run_dir, "limit": sample_limit, "figures_dir": figures}),
        NotebookRun("06_evaluate", f"06_evaluate.{name}", {"run_dir": run_dir, "figures_dir": figures}),
    ] for name, run_dir in sorted(zip(experiments, run_dirs), key=lambda pair: -classes[pair[0]])]
    if stored:  # no figures: the dog experiment above draws the same ones
        chains.insert(0, [NotebookRun(name, f"{name}.default", stored=True) for name in DEFAULT_CHAIN])
        chains.append([NotebookRun("00_quickstart", "00_quickstart", stored=True)])
    else:
        chains.append([NotebookRun("00_quickstart", "00_quickstart", {**common, "run_dir": str(runs_dir / "quickstart"),
                                                                       "overrides": overrides})])
    single = {"figures_dir": figures} if stored else common
    chains.append([NotebookRun("09_toy_world", "09_toy_world", {"figures_dir": figures}, stored)])  # the shipped record
    chains.append([NotebookRun("10_long_and_live", "10_long_and_live", {}, stored)])  # trains its thunder mapper
    chains += [[NotebookRun(name, name, single, stored)]
               for name in ("02_model_assembly", "03_audio_features", "01_dataset_curation")]
    # 08 rates into OUT/ratings.csv (the kernels start in OUT), not the shared runs/ratings.csv.
    chains += [[NotebookRun("07_results", "07_results",
                            {"run_dirs": run_dirs, "figures_dir": figures, "table_dir": figures})],
               [NotebookRun("08_human_eval", "08_human_eval",
                            {"run_dirs": run_dirs, "ratings_file": "ratings.csv", "figures_dir": figures})]]
    return chains


@contextlib.contextmanager
def kernel_environment(jobs: int, out_dir: Path):
    """Kernels started inside inherit ``AVLIB_HEADLESS=1`` (no widgets to click, no progress bars:
    :mod:`avlib.progress`), ``AVLIB_RUNS=OUT/runs`` (the default runs are made
    afresh, as under nbval) and, unless ``OMP_NUM_THREADS`` is set, an equal share of the CPUs
    (``jobs`` kernels with all the threads each would thrash)."""
    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, usable_cpus() // jobs)))
    settings = {HEADLESS_ENV: "1", "AVLIB_RUNS": str(out_dir / "runs"),
                "OMP_NUM_THREADS": threads}
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs() -> int:
    """Notebooks run at once: two where there are two CPUs or more."""
    return min(2, usable_cpus())


def fresh_namespace(folder: Path) -> str:
    """Code run silently in a lane's kernel before each notebook, so that it starts as in a kernel
    of its own: an empty namespace, cells counted from 1 again, a new history session, the working
    folder ``folder`` again, warnings shown anew, the last notebook's garbage collected and the GPU
    memory torch cached for it given back (another lane's kernel may need it); imported modules
    stay, the point of sharing the kernel. What survives (modules: torch's and diffusers' half a
    million objects) is then frozen out of later collections, which took 0.6 s each. (Every
    notebook seeds what it draws; torch's and numpy's global generators start from fresh entropy
    in a kernel of its own anyway.)"""
    return "\n".join([
        "get_ipython().reset(new_session=True)",  # its own collection runs before the namespace is cleared
        "import gc, os, sys, warnings",
        f"os.chdir({str(folder)!r})",
        "kept = warnings.filters[:]",
        "warnings.resetwarnings()",                  # forgets which warnings were shown
        "warnings.filters[:] = kept",
        "gc.collect()",
        "if 'torch' in sys.modules and sys.modules['torch'].cuda.is_initialized():",
        "    sys.modules['torch'].cuda.empty_cache()",
        "gc.freeze()",
        "del gc, os, sys, warnings, kept",
    ])


def lane_kernel_manager():
    """jupyter_client's ``AsyncKernelManager``, keeping the clients it hands out (papermill's and
    :func:`clear_namespace`'s) so that :func:`run_notebook` can close them: nbclient leaves a
    client it did not start the kernel for running (its heartbeat thread and five sockets)."""
    # jupyter_client (0.4 s) and papermill (0.6 s) load when notebooks run, not for `avlib reproduce --help`.
    from jupyter_client.manager import AsyncKernelManager

    class LaneKernelManager(AsyncKernelManager):
        open_clients = List()

        def client(self, **kwargs):
            client = super().client(**kwargs)
            self.open_clients.append(client)
            return client

        def close_clients(self) -> None:
            while self.open_clients:
                self.open_clients.pop().stop_channels()

    return LaneKernelManager


@contextlib.contextmanager
def lane_kernel(out_dir: Path):
    """One kernel, started in ``out_dir``, for every notebook a lane runs: torch and diffusers
    are imported once per lane instead of once per notebook. Each notebook still starts afresh
    (:func:`run_notebook`); the kernel is shut down at the end."""
    with ipc_kernel_config() as config:
        kernel = lane_kernel_manager()(kernel_name=KERNEL, config=config)
        run_sync(kernel.start_kernel)(cwd=str(out_dir))
        try:
            yield kernel
        finally:
            kernel.close_clients()
            run_sync(kernel.shutdown_kernel)(now=False)


def clear_namespace(kernel, folder: Path) -> None:
    """Run :func:`fresh_namespace` in ``kernel`` (from :func:`lane_kernel`) and wait for it."""
    client = kernel.client()
    client.start_channels()
    run_sync(client.wait_for_ready)(timeout=60)
    reply = run_sync(client.execute_interactive)(fresh_namespace(folder), silent=True,
                                                 store_history=False, timeout=120)
    kernel.close_clients()
    if reply["content"]["status"] != "ok":
        raise AvlibError(f"could not clear the kernel's namespace between notebooks: {reply['content']}")


def run_in_lanes(stages: list[list[list[NotebookRun]]], jobs: int, out_dir: Path,
                 run_step: Callable[[NotebookRun, Any], None]) -> None:
    """Run ``stages`` one after the other, each stage's chains on ``jobs`` lanes: a lane is a
    thread with one kernel (:func:`lane_kernel`) that takes the next chain in list order and runs
    its notebooks (``run_step(step, kernel)``) until none is left, then waits for the other lanes.
    The first failure (or an interrupt) stops every lane before its next notebook and is raised."""
    pending = [list(stage) for stage in stages]
    lock, stage_done = threading.Lock(), threading.Barrier(jobs)

    def next_chain(stage: list) -> list[NotebookRun] | None:
        with lock:  # none once another lane has failed
            return stage.pop(0) if stage and not stage_done.broken else None

    def lane() -> None:
        try:
            with lane_kernel(out_dir) as kernel:
                try:
                    for stage in pending:
                        while (chain := next_chain(stage)) is not None:
                            for step in chain:
                                if stage_done.broken:
                                    raise threading.BrokenBarrierError
                                run_step(step, kernel)
                        stage_done.wait()
                except BaseException:
                    stage_done.abort()  # before this kernel's shutdown: the others stop at once
                    raise
        except BaseException:
            stage_done.abort()  # the kernel did not start
            raise
        finally:  # the event loop jupyter_client ran in this thread, closed here, not by the collector
            ensure_event_loop().close()

    with ThreadPoolExecutor(jobs) as pool:
        lanes = [pool.submit(lane) for _ in range(jobs)]
        try:
            errors = [error for error in (future.exception() for future in lanes) if error is not None]
        except BaseException:  # Ctrl-C here: the lanes stop after their current notebook
            stage_done.abort()
            raise
    if errors:  # the failure itself, not a lane that was stopped because of it
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])


def run_notebook(step: NotebookRun, out_dir: Path, notebook_dir: Path = NOTEBOOK_DIR, kernel=None) -> float:
    """Execute one notebook with papermill; returns its wall time in seconds. In ``kernel``
    (from :func:`lane_kernel`) after clearing its namespace, else in a kernel of its own."""
    import papermill  # see lane_kernel_manager
    from papermill.exceptions import PapermillExecutionError

    source = notebook_dir / f"{step.notebook}.ipynb"
    if not source.is_file():
        raise AvlibError(f"notebook {source} not found (run from a source checkout of avlib)")
    output = out_dir / "notebooks" / f"{step.output}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        if kernel is not None:
            clear_namespace(kernel, out_dir)
            try:
                papermill.execute_notebook(str(source), str(output), parameters=step.parameters,
                                           kernel_name=KERNEL, progress_bar=False, km=kernel)
            finally:
                kernel.close_clients()
        else:
            # The kernel starts in out_dir (nbclient's resources path). Not papermill's ``cwd``: that
            # chdirs this whole process, and from parallel threads one run's restore can land
            # between another's chdir and its kernel start, which then starts in the wrong folder.
            with ipc_kernel_config() as config:
                papermill.execute_notebook(str(source), str(output), parameters=step.parameters,
                                           kernel_name=KERNEL, progress_bar=False,
                                           resources={"metadata": {"path": str(out_dir)}}, config=config)
    except PapermillExecutionError as exc:
        raise AvlibError(f"{step.output} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                         f"(the executed notebook is {output})") from exc
    if step.stored:
        store_outputs(output, source)
    return time.perf_counter() - started


def store_outputs(executed: Path, source: Path) -> Path:
    """Write ``source`` back with ``executed``'s outputs (:func:`stored_notebook`)."""
    notebook = stored_notebook(nbformat.read(executed, as_version=4), nbformat.read(source, as_version=4),
                               checkout=NOTEBOOK_DIR.parent)
    with atomic_path(source) as tmp:
        nbformat.write(notebook, str(tmp))
    return source


def stored_notebook(executed, source, checkout: Path | None = None):
    """The committed form of an executed notebook: ``source``'s cells and metadata with
    ``executed``'s outputs, so that a second run on an unchanged tree writes the same bytes.
    papermill's injected parameters cell and its metadata (timings, timestamps) are dropped,
    execution counts run 1, 2, ... over the code cells, and consecutive writes to one stream
    become one output (how the kernel split them depends on timing). ``checkout`` (a folder)
    is written as :data:`CHECKOUT_PLACEHOLDER` in every text output."""
    ran = [cell for cell in executed.cells if "injected-parameters" not in cell.metadata.get("tags", [])]
    if [cell.source for cell in ran] != [cell.source for cell in source.cells]:
        raise AvlibError(f"the executed notebook's cells differ from {source}: was it edited while running?")
    stored = copy.deepcopy(source)
    count = 0
    for cell, done in zip(stored.cells, ran):
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        cell.outputs = merged_streams(done.outputs)
        if checkout is not None:
            for output in cell.outputs:
                placed_checkout(output, str(checkout), CHECKOUT_PLACEHOLDER)
        for output in cell.outputs:
            if output.output_type == "execute_result":
                output.execution_count = count
    return stored


def placed_checkout(output, checkout: str, placeholder: str) -> None:
    """Write ``placeholder`` for ``checkout`` in ``output``'s text (streams and text data)."""
    if output.output_type == "stream":
        output.text = output.text.replace(checkout, placeholder)
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            output.data[mime] = value.replace(checkout, placeholder)


def merged_streams(outputs: list) -> list:
    """``outputs`` with each run of consecutive same-stream outputs joined into one."""
    merged = []
    for output in copy.deepcopy(outputs):
        previous = merged[-1] if merged else None
        if (output.output_type == "stream" and previous is not None and previous.output_type == "stream"
                and previous.name == output.name):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


def prepare_out_dir(out_dir: Path) -> None:
    """An empty folder; a previous reproduction there (it has ``reproduce.json``) is replaced."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / RECORD).is_file():
            raise AvlibError(f"{out_dir} is not empty and holds no {RECORD}: choose another --out "
                             "(reproduce only replaces its own earlier output)")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / RECORD, {"status": "running"})


def refresh_figures(made: Path, figures_dir: Path, profile: str) -> list[Path]:
    """Replace ``figures_dir``'s ``*.{profile}.*`` files with those in ``made``; rewrite its README."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    for old in figures_dir.glob(f"*.{profile}.*"):
        old.unlink()
    copied = []
    for new in sorted(made.glob(f"*.{profile}.*")):
        with atomic_path(figures_dir / new.name) as tmp:
            shutil.copyfile(new, tmp)
        copied.append(figures_dir / new.name)
    write_figures_readme(figures_dir)
    return copied


def write_figures_readme(figures_dir: Path) -> Path:
    """``figures/README.md``: every figure and table there, grouped by the profile that made it."""
    lines = ["# Figures", "",
             "Generated by `avlib reproduce --profile PROFILE` (`make demo` = tiny); do not edit by hand.",
             "Every file is named `{name}.{profile}.{ext}`; PNGs also carry the profile in their",
             "metadata (`avlib-profile`). **Tiny-profile figures come from the toy world's stand-in models",
             "and TOY metric networks, trained on the synthetic world: they compare toy-world runs (40",
             "held-out clips per class, each run beside its shuffled-audio control), not the report's numbers.**",
             ""]
    for profile in PROFILES:
        files = sorted(p for p in figures_dir.glob(f"*.{profile}.*"))
        if not files:
            continue
        lines += [f"## {profile} profile", ""]
        for path in files:
            stamp = figure_profile(path) if path.suffix == ".png" else profile
            lines.append(f"- [`{path.name}`]({path.name})" + ("" if stamp == profile else
                                                           f" (stamp says {stamp}!)"))
        lines.append("")
    path = figures_dir / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def reproduce(profile: str = "tiny", experiments: Sequence[str] = DEFAULT_EXPERIMENTS,
              out_dir: str | Path | None = None, figures_dir: str | Path = "figures",
              overrides: Mapping[str, Any] | None = None, sample_limit: int | None = None,
              jobs: int | None = None, notebook_dir: Path = NOTEBOOK_DIR, progress: bool = True) -> dict[str, Any]:
    """Run every notebook for ``experiments`` in ``profile``; returns the record it writes.

    ``jobs`` notebooks run at once (default :func:`default_jobs`), each of the ``jobs`` lanes in
    one kernel whose namespace is emptied before every notebook (:func:`run_in_lanes`); every
    notebook seeds what it draws, so the results do not depend on ``jobs`` or on which lane ran what.
    """
    out_dir = Path(out_dir or runs_dir() / f"reproduce_{profile}").resolve()
    figures_dir = Path(figures_dir).resolve()
    chains = plan(profile, list(experiments), out_dir, overrides, sample_limit)
    jobs = jobs or default_jobs()
    prepare_out_dir(out_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    bar = tqdm(total=sum(map(len, chains)), desc=f"reproduce ({profile})", unit="notebook", disable=not progress)

    def run_step(step: NotebookRun, kernel) -> None:
        # A stored notebook runs in a kernel of its own, as nbval re-runs it: the notebooks a lane's
        # kernel ran before move where arrays land in memory, and with it the last bits of some
        # sums (one generated video in 80 came out different), which a stored output would keep.
        timings[step.output] = round(run_notebook(step, out_dir, notebook_dir, None if step.stored else kernel), 1)
        bar.update()

    with kernel_environment(jobs, out_dir):
        run_in_lanes([chains[:-2], chains[-2:]], jobs, out_dir, run_step)
    bar.close()
    figures = refresh_figures(out_dir / "figures", figures_dir, profile)
    record = run_record(None, None, status="done", profile=profile, experiments=list(experiments),
                        overrides=dict(overrides or {}), jobs=jobs, notebooks=timings,
                        total_s=round(time.perf_counter() - started, 1),
                        figures=[str(p) for p in figures])
    write_json(out_dir / RECORD, record)
    return record
