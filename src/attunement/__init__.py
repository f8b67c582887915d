"""attunement: personalized empathy for LLM assistants.

Build PersonaEmp-style datasets from long-term user histories, score replies
with the PERM and PereGRM empathy rewards, train policies on them and evaluate.
"""

__version__ = "0.1.0"
