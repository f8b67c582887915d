"""The judge card: is this judge fit to be a reward, before anyone trains on it?

- :mod:`~attunement.judge_card.run`: inputs, the scoring steps, the card;
- :mod:`~attunement.judge_card.checks`: the statistics of each check;
- :mod:`~attunement.judge_card.probes`: the gaming probes (altered good replies);
- :mod:`~attunement.judge_card.report`: ``card.md``, ``card.html``, ``card.json``.

Guide: docs/judge-card.md.
"""

from attunement.judge_card.run import CardSettings, JudgeCard, load_inputs, run_judge_card

__all__ = ["CardSettings", "JudgeCard", "load_inputs", "run_judge_card"]
