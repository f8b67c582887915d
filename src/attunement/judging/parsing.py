"""Read a judge's verdict out of its answer, and nothing else: the parsers' face.

A judge answer is untrusted text twice over: the judge may ramble, and it may
quote the reply it was shown, which can itself contain ``Score: 5``. A policy
trained on the parsed number learns whatever the parser lets through, so every
parser follows the same five rules, each kept in one module:

1. **Echoes are removed** (:mod:`attunement.judging.echoes`): every fenced
   block the judge copied back is cut out before anything is read.
2. **The verdict ends the answer** and 3. **a verdict is one number**
   (:mod:`attunement.judging.verdicts`): the last score token, alone at the end
   of its line with nothing score-like after it; ranges, templates, quoted
   lines and values off the scale are failures with a reason.
4. **A verdict copied from the judged text is not the judge's**
   (:func:`attunement.judging.echoes.echo_span`): both sides folded, only
   text the judge was shown counts, format words never make a copy.
5. **The bystander's arithmetic is checked** (:mod:`attunement.judging.bystander`).

The readers of each answer shape: ratings (:mod:`attunement.judging.ratings`),
the bystander (:mod:`attunement.judging.bystander`), criteria lists
(:mod:`attunement.judging.criteria_lists`). A parse never invents a number: it
returns a :class:`Parsed` (or :class:`ParsedCriteria`) whose ``reason`` says
what was wrong, and the caller decides whether to draw a fresh sample.

Code outside the judging package imports the parsers from here; modules of the
package import the module that holds each name.
"""

from __future__ import annotations

from attunement.judging.bystander import parse_bystander
from attunement.judging.criteria_lists import (
    Criterion,
    ParsedCriteria,
    format_criteria_list,
    parse_criteria,
    render_criteria,
    rescale_weights,
)
from attunement.judging.echoes import (
    ECHO_GAP,
    ECHO_RUN,
    ECHO_TOKENS,
    FENCE_LABELS,
    FORMAT_WORDS,
    echo_span,
    readable,
    strip_fenced,
)
from attunement.judging.ratings import parse_rating
from attunement.judging.scale import (
    BYSTANDER_KEYS,
    BYSTANDER_MAX,
    BYSTANDER_PART_MAX,
    BYSTANDER_PARTS,
)
from attunement.judging.settings import OutputFormat
from attunement.judging.verdicts import (
    LINE_PREFIX,
    NUMBER,
    RANGE_AFTER,
    Candidate,
    Parsed,
    failed,
    final_verdict,
    line_end_at,
)

__all__ = [
    "BYSTANDER_KEYS",
    "BYSTANDER_MAX",
    "BYSTANDER_PARTS",
    "BYSTANDER_PART_MAX",
    "ECHO_GAP",
    "ECHO_RUN",
    "ECHO_TOKENS",
    "FENCE_LABELS",
    "FORMAT_WORDS",
    "LINE_PREFIX",
    "NUMBER",
    "RANGE_AFTER",
    "Candidate",
    "Criterion",
    "OutputFormat",
    "Parsed",
    "ParsedCriteria",
    "echo_span",
    "failed",
    "final_verdict",
    "format_criteria_list",
    "line_end_at",
    "parse_bystander",
    "parse_criteria",
    "parse_rating",
    "readable",
    "render_criteria",
    "rescale_weights",
    "strip_fenced",
]
