"""host-serve's pages for people: the run's generations at ``/`` and the API reference at ``/docs``.

Plain HTML made on the server from what /generations and /openapi.json already say, with no script and nothing
from the internet (FastAPI's Swagger UI loads its JavaScript from a CDN, which a lab network often cannot reach).
"""
from __future__ import annotations

import html
from typing import Iterable

from contract.generation_files import CARD_JSON, LABELS_TXT, MODEL_ONNX, STATIC_BATCH_ONNX, generation_url_path

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
.scroll{max-width:100%;overflow-x:auto}table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}td{white-space:nowrap}td.l,th.l{text-align:left}td.wrap{white-space:normal}code{background:#f4f4f4;padding:0 .3em}
.muted{color:#777}td.wrap a{white-space:nowrap}.warn{color:#b00}h1{font-size:1.5em}"""


def _number(value, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _figures_cell(figures: Iterable[dict]) -> str:
    """A generation's device figures, one line each: device, kind of measurement, fps, (unstable)."""
    lines = []
    for figure in figures:
        flag = ' <span class="warn">(unstable)</span>' if figure.get("stable") is False else ""
        lines.append(f"{html.escape(figure['device_id'])} {html.escape(figure['measurement'])}: "
                     f"{_number(figure['fps'])}{flag}")
    return "<br>".join(lines) or '<span class="muted">none yet</span>'


def _interval_cell(generation: dict) -> str:
    """Under a top-1: its 95 % interval and the validation images it was counted on, when the run kept them."""
    span, images = generation.get("top1_interval"), generation.get("val_images")
    if not span or not images:
        return ""
    return (f"<br><span class=muted>95 % CI {100 * span[0]:.0f}-{100 * span[1]:.0f}, "
            f"{int(images)} images</span>")


def index_html(run_name: str, generations: list[dict], best: int | None, address: str = "http://HOST:8700") -> str:
    """The page at ``/``: one row per generation (size, params, top-1/top-5, local and device fps, every
    device figure by kind) with links to its files, the aliases ``latest`` and ``best``, and the device-serve
    command with host-serve's ``address`` as the page was reached."""
    rows = []
    latest = generations[-1]["generation"] if generations else None
    for g in generations:
        number = g["generation"]
        tags = [name for name, value in (("latest", latest), ("best", best)) if value == number]
        files = " ".join(f'<a href="/models/{number}/{name}">{name}</a>'
                         for name in (MODEL_ONNX, STATIC_BATCH_ONNX, LABELS_TXT, CARD_JSON))
        rows.append(
            f"<tr><td>{number}{' <b>(' + ', '.join(tags) + ')</b>' if tags else ''}</td>"
            f"<td>{'-' if g['parent'] is None else g['parent']}</td><td>{_number(g['size_bytes'] / 1e6, 3)} MB</td>"
            f"<td>{g['params']:,}</td><td>{_number(100 * g['top1'], 1, ' %')}{_interval_cell(g)}</td>"
            f"<td>{_number(100 * g['top5'], 1, ' %')}</td><td>{_number(g['local_fps'])}</td>"
            f"<td>{_number(g['device_fps'])}</td><td class='l wrap'>{_figures_cell(g.get('device_figures', []))}</td>"
            f"<td class='l wrap'>{files}</td></tr>")
    table = ("<div class=scroll><table><tr><th>generation</th><th>parent</th><th>size</th><th>params</th><th>top-1</th>"
             "<th>top-5</th><th>local fps</th><th>device fps<br><span class=muted>benchmark, batch 1</span></th>"
             "<th class=l>device figures</th><th class=l>files</th></tr>" + "".join(rows) + "</table></div>"
             if rows else "<p>No generation yet: host-evolve adds one as each finishes; reload then.</p>")
    example = best if best is not None else latest
    usage = ""
    if example is not None:
        usage = (f"<h2>On a device</h2><p><code>device-serve --model {html.escape(address)}"
                 f"{generation_url_path('best')} csi://0 --http 8080</code> (or <code>/models/latest/</code>, or a "
                 f"generation's number). jetson-inference's imagenet takes <code>{STATIC_BATCH_ONNX}</code> (batch "
                 f"fixed at 1) with <code>--input_blob=input_0 --output_blob=output_0 --labels={LABELS_TXT}</code>.</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>squishednets host-serve: "
            f"{html.escape(run_name)}</title><style>{STYLE}</style></head><body>"
            f"<h1>squishednets host-serve: run {html.escape(run_name)}</h1>"
            f"<p>{len(generations)} generation(s). latest: {'-' if latest is None else latest}; best (the smallest "
            f"within the run's top-1 tolerance of the ancestor, summary.json's best_generation): "
            f"{'-' if best is None else best}. "
            f'Machine-readable: <a href="/generations">/generations</a>; API: <a href="/docs">/docs</a> '
            f'(<a href="/openapi.json">/openapi.json</a>).</p>{table}{usage}</body></html>')


def api_reference_html(openapi: dict) -> str:
    """The page at ``/docs``: every path and method of ``openapi`` (FastAPI's document) with its summary and
    description, in plain HTML."""
    items = []
    for path, methods in sorted(openapi.get("paths", {}).items()):
        for method, operation in methods.items():
            summary = operation.get("summary") or ""
            description = operation.get("description") or ""
            items.append(f"<tr><td class=l><code>{html.escape(method.upper())}</code></td>"
                         f"<td class=l><code>{html.escape(path)}</code></td><td class='l wrap'>{html.escape(summary)}"
                         f"{'<br><span class=muted>' + html.escape(description) + '</span>' if description else ''}"
                         f"</td></tr>")
    title = html.escape(openapi.get("info", {}).get("title", "API"))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}: API</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}: API</h1><p>The OpenAPI document: "
            f'<a href="/openapi.json">/openapi.json</a>. The run: <a href="/">/</a>.</p><div class=scroll><table>'
            f"<tr><th class=l>method</th><th class=l>path</th><th class=l>what</th></tr>{''.join(items)}</table></div>"
            f"</body></html>")
