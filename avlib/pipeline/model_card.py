"""The model card of a saved pipeline: ``README.md`` in its folder, so the folder can go to the
hub as it is.

It says what the pipeline is, how to load and run it, the settings it generates with and
where its frozen parts come from; in a run's ``pipeline/`` also the run's experiment, data and
config and, once the run is scored (``avlib evaluate``), its metrics.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from avlib.io import atomic_path, read_json
from avlib.run import Run

CARD_FILE = "README.md"
MODEL_INDEX = "model_index.json"   # diffusers' DiffusionPipeline.config_name


def write_model_card(folder: str | Path) -> Path:
    """Write ``folder/README.md`` from the folder's ``model_index.json`` and the run it
    belongs to (when ``folder`` is a run's ``pipeline/``)."""
    folder = Path(folder)
    index = read_json(folder / MODEL_INDEX, "pipeline index")
    run = Run(folder.parent)
    record = run.config_record() if run.config_file.is_file() else None
    metrics = read_json(run.metrics_file, "metrics file") if run.metrics_file.is_file() else None
    with atomic_path(folder / CARD_FILE) as tmp:
        tmp.write_text(model_card(index, record, metrics))
    return folder / CARD_FILE


def model_card(index: Mapping[str, Any], record: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None) -> str:
    """The card's Markdown: hub metadata, usage, settings, sources, then the run's config,
    data and metrics where given."""
    config = (record or {}).get("config") or {}
    title = f"AudioVisGen: {config['name']} ({config['profile']} profile)" if config else "AudioVisGen pipeline"
    parts = [_front_matter(), f"# {title}\n",
             "Audio in, video out: a frozen audio encoder, a trained mapper that turns the audio into "
             "per-frame pseudo-word tokens, and a frozen text-to-video diffusion model "
             "(the `avlib` package's `AudioToVideoPipeline`).\n",
             _usage(), _settings_table(index.get("settings") or {}), _sources(index)]
    if config:
        parts.append(_run_section(config, record))
    if metrics:
        parts.append(_metrics_table(metrics))
    return "\n".join(parts)


def _front_matter() -> str:
    return "---\nlibrary_name: diffusers\npipeline_tag: text-to-video\ntags:\n- audio-to-video\n- avlib\n---\n"


def _usage() -> str:
    return ("## Use\n\n```python\nfrom diffusers import DiffusionPipeline\n\n"
            "pipe = DiffusionPipeline.from_pretrained(FOLDER, trust_remote_code=True)  # needs `avlib` installed\n"
            "video = pipe(audio)  # 16 kHz mono samples; the settings below apply\n"
            "video.save(\"out.mp4\")  # the frames at their fps, the audio muxed in\n```\n\n"
            "Keyword arguments override a setting for one call (`pipe(audio, guidance_scale=15)`); "
            "`pipe.set_settings(...)` changes them for good (and the scheduler with them).\n")


def _settings_table(settings: Mapping[str, Any]) -> str:
    rows = "".join(f"| {name} | {value!r} |\n" for name, value in settings.items())
    return f"## Generation settings\n\n| setting | value |\n|---|---|\n{rows}"


def _sources(index: Mapping[str, Any]) -> str:
    referenced = [name for name, value in index.items() if isinstance(value, list) and value[0] is None]
    lines = [f"- text-to-video model: `{index.get('t2v_source') or 'copied into this folder'}`",
             f"- audio encoder: `{json.dumps(index.get('encoder_config') or {})}`"]
    if referenced:
        lines.append(f"- loaded from those sources, not stored here: {', '.join(referenced)}")
    return "## Sources\n\n" + "\n".join(lines) + "\n"


def _run_section(config: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    data = config.get("data") or {}
    facts = [f"- experiment: `{config['name']}`, profile `{config['profile']}`, seed {record.get('seed')}",
             f"- data: `{data.get('dataset')}` (classes {', '.join(data.get('classes') or [])}), "
             f"{data.get('num_frames')} frames at {data.get('fps')} fps, {data.get('height')}x{data.get('width')}",
             f"- prompt: {config.get('prompt')!r}"]
    return ("## Training run\n\n" + "\n".join(facts) + "\n\n<details><summary>config</summary>\n\n```json\n"
            + json.dumps(config, indent=2) + "\n```\n</details>\n")


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = []
    for name, entry in (metrics.get("metrics") or {}).items():
        ci = entry.get("ci95")
        interval = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        value = "skipped" if entry.get("value") is None else f"{entry['value']:.4g}"
        rows.append(f"| {name} | {value} | {interval} | {entry.get('n', '')} |")
    notes = "".join(f"\n{note}\n" for note in metrics.get("notes") or [])
    return "## Metrics\n\n| metric | value | 95% CI | n |\n|---|---|---|---|\n" + "\n".join(rows) + "\n" + notes
