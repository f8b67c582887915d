"""evaluation.html: escaping, embedded images, and a page that needs nothing else."""

from __future__ import annotations

import base64
import re

from attunement.evaluation.html import (
    Raw,
    details,
    esc,
    figure,
    page,
    panel,
    pre,
    section,
    table,
)

ATTACK = "<script>alert(\"x\")</script><img src=x onerror=alert(1)> & 'q'"


def test_esc_escapes_markup_and_quotes():
    assert esc(ATTACK) == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x "
        "onerror=alert(1)&gt; &amp; &#x27;q&#x27;"
    )
    assert esc(None) == ""
    assert esc(3.5) == "3.5"


def test_table_escapes_cells_but_not_raw_html():
    html = table(
        ["sys<tem>", "Avg"],
        [[ATTACK, 4.25], [Raw("<b>bold</b>"), None]],
        caption="cap & <x>",
        cls="main",
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>bold</b>" in html
    assert '<th class="text">sys&lt;tem&gt;</th><th>Avg</th>' in html
    assert '<td class="text">' in html and "<td>4.25</td>" in html and "<td></td>" in html
    assert "<caption>cap &amp; &lt;x&gt;</caption>" in html
    assert html.startswith('<table class="main">')
    two = table(["a", "b", "c"], [["x", "y", 1]], text_columns=2)
    assert two.count('class="text"') == 4


def test_figure_embeds_the_png_bytes(tmp_path):
    png = b"\x89PNG\r\n\x1a\nfake"
    html = figure(png, "Res by k <1>")
    src = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(src) == png
    assert "<figcaption>Res by k &lt;1&gt;</figcaption>" in html
    assert 'alt="Res by k &lt;1&gt;"' in html
    path = tmp_path / "p.png"
    path.write_bytes(png)
    assert figure(path, "x", alt="alt text") == figure(png, "x", alt="alt text")
    assert isinstance(html, Raw)


def test_blocks_escape_their_titles():
    assert pre(ATTACK) == f"<pre>{esc(ATTACK)}</pre>"
    p = panel("<reply>", pre("hi"))
    assert p.startswith('<div class="panel"><h3>&lt;reply&gt;</h3><pre>hi</pre>')
    d = details("ex <1>", p)
    assert d.startswith('<details class="example"><summary>ex &lt;1&gt;</summary>')
    assert "open" not in d.split(">")[0]
    assert details("s", "", open_=True).startswith('<details class="example" open>')
    s = section("T<1>", "body", id="t1", lead="why <this>")
    assert s == (
        '<section id="t1"><h2>T&lt;1&gt;</h2><p class="lead">why &lt;this&gt;</p>body</section>'
    )


def test_page_is_self_contained():
    html = page(
        "Eval <run>",
        [section("S", table(["a"], [[ATTACK]]))],
        subtitle="sub",
        summary="best: <x>",
        nav=[("s", "S <1>")],
    )
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</body></html>")
    assert "<title>Eval &lt;run&gt;</title>" in html and "<h1>Eval &lt;run&gt;</h1>" in html
    assert '<div class="summary">best: &lt;x&gt;</div>' in html
    assert '<nav><a href="#s">S &lt;1&gt;</a></nav>' in html
    assert "<script" not in html.lower()
    # nothing is fetched from elsewhere: no external src, href or CSS import
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "@import" not in html and "url(" not in html
