"""Evaluation: the base and the tuned model answer the held-out questions; LLM judges (0-10),
ROUGE-1/2/L, length ratio and hedging words score them; a report compares the two.

`answer` (questions, answering, caching), `judge` (prompts, verdict parsing, pairwise mode),
`metrics` (text metrics and statistics), `report` (tables, plots, markdown), `stage` (the whole
evaluation of a training run, recorded in the database and the store).
"""
