"""audit.html: one self-contained page (images inline as base64 PNGs, no script, nothing fetched) showing the
most probable label errors (given vs suggested label, the model's confidence), duplicate pairs side by side,
outliers, and a table per class. Every name that comes from the data is HTML-escaped."""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from .issues import TRAIN_TEST, shown_rows

SHOWN = 50  # images (or pairs) per section: the most certain first
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:12px}.cell{width:140px;font-size:12px;text-align:center}
.cell img{width:96px;height:96px;image-rendering:pixelated;display:block;margin:0 auto 4px}
.pair{display:flex;gap:4px;justify-content:center}.pair img{width:80px;height:80px}.pair + div{margin-top:4px}
.wide{width:200px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.given{color:#a00}.suggested{color:#070}"""


def png_data_uri(image) -> str:
    """A uint8 image tensor (3 x H x W) as a data: URI of a PNG."""
    buf = io.BytesIO()
    Image.fromarray(image.cpu().permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(image, alt: str) -> str:
    return f"<img src='{png_data_uri(image)}' alt='{html.escape(alt, quote=True)}'>"


def image_name(split: str, image: str) -> str:
    """An image as a person reads it: "test 17" for an index, the relative path of a folder dataset's file."""
    return f"{split} {image}" if image.isdigit() else image


def _name(split: str, image: str) -> str:
    return html.escape(image_name(split, image))


def write_page(rows: list[dict], summary: dict, pixels, classes: tuple[str, ...]) -> str:
    """The page's HTML. `pixels(split, image)` gives the uint8 tensor of an image named as in the rows."""
    esc = html.escape
    parts = [
        (
            f"<!doctype html><html><head><meta charset='utf-8'><title>Data audit of {esc(summary['run'])}</title>"
            f"<style>{STYLE}</style></head><body>"
        ),
        f"<h1>Data audit of {esc(summary['run'])}</h1>",
        f"<p>{esc(_summary_line(summary))}</p>",
    ]

    labels = [r for r in rows if r["issue"] == "label"]
    parts.append(f"<h2>Probable label errors ({len(labels)})</h2>")
    parts.append(
        "<p>Lowest label quality first: the given label in red, the label the out-of-sample model suggests "
        "in green, with its probability.</p><div class='grid'>"
    )
    for r in labels[:SHOWN]:
        parts.append(
            f"<div class='cell'>{_img(pixels(r['split'], r['image']), r['image'])}"
            f"<div>{_name(r['split'], r['image'])}</div><div class='given'>given: {esc(r['given_label'])}"
            f"</div><div class='suggested'>suggested: {esc(r['suggested_label'])} "
            f"({float(r['confidence']):.0%})</div><div>score {r['score']:.3g}</div></div>"
        )
    parts.append("</div>")

    pairs = shown_rows(rows, TRAIN_TEST) + shown_rows(rows, "near_duplicate")
    parts.append(
        f"<h2>Duplicates ({len(pairs)})</h2><p>Test images that duplicate a training image (distance 0: "
        "identical pixels), then near duplicates within a split; the pair side by side.</p>"
        "<div class='grid'>"
    )
    for r in pairs[:SHOWN]:
        parts.append(
            f"<div class='cell wide'><div class='pair'>{_img(pixels(r['split'], r['image']), r['image'])}"
            f"{_img(pixels(r['duplicate_split'], r['duplicate_image']), r['duplicate_image'])}</div>"
            f"<div>{_name(r['split'], r['image'])} ({esc(r['given_label'])})</div>"
            f"<div>{_name(r['duplicate_split'], r['duplicate_image'])}</div>"
            f"<div>distance {r['score']:.3g}</div></div>"
        )
    parts.append("</div>")

    outliers = [r for r in rows if r["issue"] == "outlier"]
    parts.append(
        f"<h2>Outliers ({len(outliers)})</h2><p>The images least like the rest (lowest score first).</p>"
        "<div class='grid'>"
    )
    for r in outliers[:SHOWN]:
        parts.append(
            f"<div class='cell'>{_img(pixels(r['split'], r['image']), r['image'])}"
            f"<div>{_name(r['split'], r['image'])}</div><div>{esc(r['given_label'])}</div>"
            f"<div>score {r['score']:.3g}</div></div>"
        )
    parts.append("</div>")
    parts.append(_class_table(summary, classes))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _summary_line(summary: dict) -> str:
    said = []
    for split, per_issue in summary["counts"]["per_issue"].items():
        found = ", ".join(f"{n} {issue.replace('_', ' ')}" for issue, n in per_issue.items() if n) or "nothing"
        said.append(f"{split} split ({summary['images'][split]} images): {found}")
    return "; ".join(said) + f". Settings: {summary['settings_line']}."


def _class_table(summary: dict, classes: tuple[str, ...]) -> str:
    esc = html.escape
    out = ["<h2>Per class</h2>"]
    for split, per_issue in summary["counts"]["per_class"].items():
        issues = [issue for issue, by_class in per_issue.items() if by_class]
        images = summary["images_per_class"][split]
        out.append(
            f"<h3>{esc(split)} split</h3><table><tr><th>class</th><th>images</th>"
            + "".join(f"<th>{esc(issue.replace('_', ' '))}</th>" for issue in issues)
            + "</tr>"
        )
        for c in classes:
            out.append(
                f"<tr><td>{esc(c)}</td><td>{images.get(c, 0)}</td>"
                + "".join(f"<td>{per_issue[issue].get(c, 0)}</td>" for issue in issues)
                + "</tr>"
            )
        out.append("</table>")
    return "\n".join(out)
