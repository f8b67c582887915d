"""The judge card: is this judge fit to be a reward, before anyone trains on it?

- :mod:`~attunement.judge_card.inputs`: the settings, the input files and which
  replies count as good;
- :mod:`~attunement.judge_card.run`: the scoring steps, in order, and the card;
- :mod:`~attunement.judge_card.checks`: the figures and verdict of each check;
- :mod:`~attunement.judge_card.probes`: the gaming probes (altered good replies);
- :mod:`~attunement.judge_card.card`: the card as data, its verdict and summary;
- :mod:`~attunement.judge_card.sections`: the card's content, section by section;
- :mod:`~attunement.judge_card.report`: ``card.md``, ``card.html``, ``card.json``.

Guide: docs/judge-card.md.
"""

from attunement.judge_card.card import JudgeCard
from attunement.judge_card.inputs import CardInputs, CardSettings, load_inputs
from attunement.judge_card.run import run_judge_card

__all__ = ["CardInputs", "CardSettings", "JudgeCard", "load_inputs", "run_judge_card"]
